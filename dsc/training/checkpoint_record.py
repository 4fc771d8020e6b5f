"""The checkpoint record: what dsc adds to a Lightning checkpoint, written and read here alone.

A dsc checkpoint is a Lightning checkpoint (``state_dict``, optimizer and loop states) with:

* ``dsc_config``: the run's composed config, resolved; the model is rebuilt from its ``model``
  section (``build_model``), the data from ``data``;
* ``dsc_overrides``: the run's command-line overrides, which a resumed run composes again;
* ``dsc_class_names``: the validation data's class names, class 0 first (result files, exports), or
  None for data that name no classes;
* ``dsc_rng_state``: torch's random state, so a resumed run draws what it would have;
* ``dsc_wandb_run_id``: the W&B run, so a resumed run logs into it (only with a W&B logger).

Files are read with ``torch.load(weights_only=True)`` alone (``read_checkpoint``): tensors and plain
data load, pickled code is refused. An exported ONNX file carries the config and class names in its
metadata under the same keys (``dsc.deploy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from dsc.contracts import InvalidInputError, MissingFileError
from dsc.training.module import DeepSpectralClustering

CONFIG = "dsc_config"
OVERRIDES = "dsc_overrides"
CLASS_NAMES = "dsc_class_names"
RNG_STATE = "dsc_rng_state"
WANDB_RUN_ID = "dsc_wandb_run_id"


@dataclass(frozen=True)
class RunRecord:
    """What a checkpoint (or an exported file) says about the run that wrote it."""

    config: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    class_names: list[str] | None = None
    wandb_run_id: str | None = None

    @classmethod
    def of(cls, checkpoint: dict[str, Any]) -> RunRecord:
        """The record of a checkpoint dict that ``read_checkpoint`` returned."""
        return cls(
            config=checkpoint[CONFIG],
            overrides=list(checkpoint[OVERRIDES]),
            class_names=checkpoint[CLASS_NAMES],
            wandb_run_id=checkpoint.get(WANDB_RUN_ID),
        )


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint written by ``python -m dsc.train``, read without executing pickled code;
    ``mmap=True`` maps the tensors instead of reading them (for a look at the record).

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one that is
    corrupt, holds pickled objects (which could run code), or lacks dsc's record.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"checkpoint {path} does not exist: pass ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # UnpicklingError, zip and EOF errors all mean: not a plain checkpoint
        raise InvalidInputError(
            f"cannot load checkpoint {path} with weights_only=True: it is corrupt or holds pickled "
            f"objects that could run code, and dsc does not execute them ({type(error).__name__}: {error})"
        ) from error
    missing = [key for key in ("state_dict", CONFIG, OVERRIDES, CLASS_NAMES) if key not in checkpoint]
    if not isinstance(checkpoint, dict) or missing:
        raise InvalidInputError(
            f"{path} is not a dsc checkpoint (it lacks {', '.join(missing) or 'a dict'}): train it with "
            "python -m dsc.train"
        )
    return checkpoint


def read_record(path: str | Path) -> RunRecord:
    """The record of the checkpoint at ``path``, its weights left unread (memory-mapped)."""
    return RunRecord.of(read_checkpoint(path, mmap=True))


def build_model(config: dict[str, Any] | Any, rounding: Any = None) -> DeepSpectralClustering:
    """The model a run's config describes (a composed DictConfig or a record's dict): its ``model``
    section instantiated; ``rounding`` (a config or an object) replaces the run's own."""
    if rounding is None:
        return hydra.utils.instantiate(config["model"])
    if isinstance(rounding, Mapping):  # built apart: Hydra would merge a config into the run's own
        rounding = hydra.utils.instantiate(rounding)
    return hydra.utils.instantiate(config["model"], rounding=rounding)


def load_model(path: str | Path, rounding: Any = None) -> tuple[DeepSpectralClustering, RunRecord]:
    """The checkpoint's model with its weights, in eval mode, and the run's record."""
    checkpoint = read_checkpoint(path)
    record = RunRecord.of(checkpoint)
    model = build_model(record.config, rounding)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), record


class CheckpointRecord(pl.Callback):
    """Writes the record into every checkpoint of a run and, when the run resumes, puts torch's
    random state back. ``config``: the resolved config; ``overrides``: its command-line overrides;
    ``class_names``: the validation data's, or None."""

    def __init__(self, config: dict[str, Any], overrides: list[str], class_names: list[str] | None) -> None:
        self.config = config
        self.overrides = list(overrides)
        self.class_names = None if class_names is None else list(class_names)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG] = self.config
        checkpoint[OVERRIDES] = self.overrides
        checkpoint[CLASS_NAMES] = self.class_names
        # torch's random state (dropout): a run resumed from here continues as it would have.
        checkpoint[RNG_STATE] = {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        }
        wandb_ids = [logger.version for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if wandb_ids:
            checkpoint[WANDB_RUN_ID] = wandb_ids[0]

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint[RNG_STATE]
        torch.set_rng_state(state["cpu"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
