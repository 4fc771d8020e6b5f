"""The checkpoint record: what dsc adds to a Lightning checkpoint, written and read here alone.

A dsc checkpoint is a Lightning checkpoint (``state_dict``, optimizer and loop states) with:

* ``dsc_config``: the run's composed config, resolved; the model is rebuilt from its ``model``
  section (``build_model``), the data from ``data``;
* ``dsc_overrides``: the run's command-line overrides, which a resumed run composes again;
* ``dsc_class_names``: the validation data's class names, class 0 first (result files, exports), or
  None for data that name no classes;
* ``dsc_training_images``: the training images' name, sizes and colour statistics
  (``dsc.data.statistics.TrainingImages``), so that ``dsc.predict`` can say when an input is far
  from them; None in checkpoints of older runs;
* ``dsc_embedding_projection``: the view of embeddings as RGB fitted on the validation embeddings of
  the epoch the checkpoint ends (``dsc.outputs.pictures.EmbeddingProjection``), so that pictures of
  one checkpoint share colours; None before the first validation;
* ``dsc_rng_state``: torch's random state, so a resumed run draws what it would have;
* ``dsc_wandb_run_id``: the W&B run, so a resumed run logs into it (only with a W&B logger).

Files are read with ``torch.load(weights_only=True)`` alone (``read_checkpoint``): tensors and plain
data load, pickled code is refused. An exported ONNX file carries the config and class names in its
metadata under the same keys (``dsc.deploy``).

A saved config is data: before dsc builds anything from one (``load_model``, ``OnnxNetwork``, a
resume), ``check_trusted`` refuses every ``_target_`` in it that is not dsc's own (``DSC_TARGETS``,
what its shipped configs build), a torch optimizer or scheduler, or a Lightning callback or logger,
unless the command names it in ``trusted_targets``; and every string that would be interpolated.
``weights_only=True`` alone would not be enough: a config of ``_target_``s can call any function of
the installed packages.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import hydra.errors
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from dsc.contracts import InvalidInputError
from dsc.data.files import require_file
from dsc.data.statistics import TrainingImages
from dsc.labels import VOID
from dsc.ops.projection import EmbeddingProjection
from dsc.training.module import DeepSpectralClustering

CONFIG = "dsc_config"
OVERRIDES = "dsc_overrides"
CLASS_NAMES = "dsc_class_names"
TRAINING_IMAGES = "dsc_training_images"
PROJECTION = "dsc_embedding_projection"
RNG_STATE = "dsc_rng_state"
WANDB_RUN_ID = "dsc_wandb_run_id"

# What dsc's shipped configs build (tests/training/test_checkpoint_record.py checks that none is missing).
DSC_TARGETS = frozenset(
    {
        "dsc.training.module.DeepSpectralClustering",
        "dsc.backbones.SmallFCN",
        "dsc.backbones.fcn8s",
        "dsc.backbones.TorchvisionSegmentation",
        "dsc.backbones.SmpSegmentation",
        "dsc.backbones.converted",
        "dsc.losses.SpectralLoss",
        "dsc.losses.JointLoss",
        "dsc.losses.SemanticCrossEntropy",
        "dsc.losses.DiscriminativeLoss",
        "dsc.losses.ContrastiveLoss",
        "dsc.rounding.Rounding",
        "dsc.rounding.ClassArgmax",
        "dsc.rounding.ConnectedComponents",
        "dsc.rounding.kwikcluster",
        "dsc.rounding.kwikcluster_soft",
        "dsc.rounding.kwikcluster_best",
        "dsc.rounding.kwikcluster_refine",
        "dsc.rounding.kmeans",
        "dsc.rounding.meanshift",
        "dsc.rounding.agglomerative",
        "dsc.data.InstanceDataModule",
        "dsc.data.RandomScaleCropFlip",
        "dsc.data.Shapes",
        "dsc.data.ShapesStyle",
        "dsc.data.VOCInstances",
        "dsc.data.SBDInstances",
        "dsc.data.COCOInstances",
        "dsc.data.CityscapesInstances",
        "dsc.data.FolderInstances",
        "dsc.training.LastCheckpoint",
        "dsc.training.BestCheckpoint",
        "dsc.training.EpochSummary",
        "dsc.training.NetworkSummary",
        "dsc.training.loggers.wandb_logger",
        "dsc.outputs.ValidationImages",
        "pytorch_lightning.Trainer",
    }
)
# Modules whose classes of one kind a saved config may name: (module, base class of the kind).
TRUSTED_KINDS = (
    ("torch.optim", "torch.optim.Optimizer"),
    ("torch.optim.lr_scheduler", "torch.optim.lr_scheduler.LRScheduler"),
    ("pytorch_lightning.callbacks", "pytorch_lightning.callbacks.Callback"),
    ("pytorch_lightning.loggers", "pytorch_lightning.loggers.Logger"),
)


def _attribute(dotted: str) -> Any:
    """``module.name`` looked up in its module, which is imported (only these fixed modules are)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name, None)


def is_trusted_target(target: str, trusted: frozenset[str] = frozenset()) -> bool:
    """Whether a saved config may name ``target``: one of ``DSC_TARGETS``, a class of one of
    ``TRUSTED_KINDS``' modules and of that kind, or one of ``trusted`` (the command's)."""
    if target in DSC_TARGETS or target in trusted:
        return True
    module, _, _ = target.rpartition(".")
    for kind_module, base in TRUSTED_KINDS:
        if module == kind_module:
            found = _attribute(target)
            return isinstance(found, type) and issubclass(found, _attribute(base))
    return False


def untrusted_entries(node: Any, trusted: frozenset[str] = frozenset(), key: str = "") -> list[str]:
    """``key=value`` of every ``_target_`` in ``node`` that ``is_trusted_target`` refuses, and of every
    string OmegaConf would interpolate (``${…}``), depth first."""
    found = []
    if isinstance(node, dict):
        for name, value in node.items():
            child = f"{key}.{name}" if key else str(name)
            if name == "_target_" and not (isinstance(value, str) and is_trusted_target(value, trusted)):
                found.append(f"{child}={value}")
            else:
                found += untrusted_entries(value, trusted, child)
    elif isinstance(node, list | tuple):
        for index, value in enumerate(node):
            found += untrusted_entries(value, trusted, f"{key}[{index}]")
    elif isinstance(node, str) and "${" in node:
        found.append(f"{key}={node}")
    return found


def check_trusted(config: dict[str, Any], source: str | Path, trusted: Any = ()) -> None:
    """Raise ``InvalidInputError`` naming ``source`` and the keys when ``config``, read from a file,
    holds anything ``untrusted_entries`` finds; ``trusted``: the targets the command names."""
    problems = untrusted_entries(config, frozenset(trusted))
    if not problems:
        return
    targets = sorted({p.split("=", 1)[1] for p in problems if p.split("=", 1)[0].endswith("_target_")})
    hint = f" If you trust its author, name them: trusted_targets=[{','.join(targets)}]" if targets else ""
    raise InvalidInputError(
        f"{source} names what dsc does not build from a file: {'; '.join(problems[:3])}"
        f"{' …' if len(problems) > 3 else ''}. A saved config may name dsc's own classes, torch's "
        f"optimizers and schedulers and Lightning's callbacks and loggers, and no interpolations.{hint}"
    )


MAX_DEPTH = 32  # nesting of a record's config: dsc's own configs nest 5 deep
MAX_NODES = 200_000  # entries of a record's config in all
MAX_TEXT = 65_536  # characters of one key or string of a record


def plain_data_problem(node: Any, key: str = "") -> str | None:
    """Where ``node`` is not plain data of a saved config (None where it is): dicts with string
    keys, lists, strings, numbers, booleans and None, at most ``MAX_DEPTH`` deep, ``MAX_NODES`` in
    all, no string over ``MAX_TEXT`` characters. Walked without recursion, so any depth is safe."""
    stack, seen = [(node, key, 0)], 0
    while stack:
        value, where, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            return f"more than {MAX_NODES} entries"
        if depth > MAX_DEPTH:
            return f"{where or 'the config'} nests deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for name, child in value.items():
                if not isinstance(name, str) or len(name) > MAX_TEXT:
                    kind = type(name).__name__
                    return f"{where or 'the config'} has a key that is not a short string ({kind})"
                stack.append((child, f"{where}.{name}" if where else name, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(value))
        elif isinstance(value, str):
            if len(value) > MAX_TEXT:
                return f"{where} holds a string of {len(value)} characters"
        elif value is not None and not isinstance(value, bool | int | float):
            return f"{where} holds a {type(value).__name__}, not plain data"
    return None


class NotADscCheckpoint(InvalidInputError):
    """A file that loads but holds no dsc record: another program's checkpoint."""


@dataclass(frozen=True)
class RunRecord:
    """What a checkpoint (or an exported file) says about the run that wrote it."""

    config: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    class_names: list[str] | None = None
    wandb_run_id: str | None = None
    training_images: TrainingImages | None = None
    projection: EmbeddingProjection | None = None

    @classmethod
    def of(cls, checkpoint: dict[str, Any], source: str | Path = "the checkpoint") -> RunRecord:
        """The record of a checkpoint dict that ``read_checkpoint`` returned (or of an exported file's
        metadata); ``InvalidInputError`` naming ``source`` and the key where it is not plain data of
        the record's kinds."""
        if not isinstance(checkpoint, dict) or CONFIG not in checkpoint:
            raise InvalidInputError(f"{source}: it holds no {CONFIG}, the run's config")
        config, overrides = checkpoint[CONFIG], checkpoint.get(OVERRIDES, [])
        class_names, wandb_run_id = checkpoint.get(CLASS_NAMES), checkpoint.get(WANDB_RUN_ID)
        kinds = [
            (CONFIG, isinstance(config, dict)),
            (OVERRIDES, isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)),
            (
                CLASS_NAMES,
                class_names is None
                or (isinstance(class_names, list) and all(isinstance(n, str) for n in class_names)),
            ),
            (WANDB_RUN_ID, wandb_run_id is None or isinstance(wandb_run_id, str)),
        ]
        wrong = [key for key, ok in kinds if not ok]
        problem = plain_data_problem(config) if isinstance(config, dict) else None
        if problem is not None:
            wrong.append(f"{CONFIG} ({problem})")
        try:
            training_images, projection = checkpoint.get(TRAINING_IMAGES), checkpoint.get(PROJECTION)
            training_images = None if training_images is None else TrainingImages.from_record(training_images)
            projection = None if projection is None else EmbeddingProjection.from_record(projection)
        except (KeyError, TypeError, ValueError):
            wrong.append(f"{TRAINING_IMAGES} or {PROJECTION}")
        if wrong:
            raise InvalidInputError(f"{source}: {', '.join(wrong)} is not what dsc records there")
        return cls(config, list(overrides), class_names, wandb_run_id, training_images, projection)

    def model_counts(self, source: str | Path) -> tuple[int, int]:
        """(d, C): the recorded network's embedding channels and class scores; ``InvalidInputError``
        naming ``source`` where the config's ``model`` section lacks them."""
        model = self.config.get("model")
        counts = [model.get(key) if isinstance(model, dict) else None for key in ("embed_dim", "num_classes")]
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 65536 for n in counts):
            raise InvalidInputError(
                f"{source}: {CONFIG}.model has no model.embed_dim and model.num_classes (counts ≥ 0)"
            )
        return counts[0], counts[1]

    def portable(self) -> dict[str, Any]:
        """The record an exported file carries (plain data under the checkpoint's keys): the config,
        the class names, the training images and the projection."""
        return {
            CONFIG: self.config,
            CLASS_NAMES: self.class_names,
            TRAINING_IMAGES: None if self.training_images is None else self.training_images.as_record(),
            PROJECTION: None if self.projection is None else self.projection.as_record(),
        }


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint written by ``python -m dsc.train``, read without executing pickled code;
    ``mmap=True`` maps the tensors instead of reading them (for a look at the record).

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one that is
    corrupt, holds pickled objects (which could run code), or lacks dsc's record.
    """
    path = Path(path)
    require_file(path, f"checkpoint {path}", "pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # UnpicklingError, zip and EOF errors all mean: not a plain checkpoint
        raise InvalidInputError(
            f"cannot load checkpoint {path} with weights_only=True: it is corrupt or holds pickled "
            f"objects that could run code, and dsc does not execute them ({type(error).__name__}: {error})"
        ) from error
    required = ("state_dict", CONFIG, OVERRIDES, CLASS_NAMES)
    missing = [key for key in required if key not in checkpoint] if isinstance(checkpoint, dict) else []
    if not isinstance(checkpoint, dict) or missing:
        raise NotADscCheckpoint(
            f"{path} is not a dsc checkpoint (it lacks {', '.join(missing) or 'a dict'}): train it with "
            "python -m dsc.train"
        )
    return checkpoint


def read_record(path: str | Path) -> RunRecord:
    """The record of the checkpoint at ``path``, its weights left unread (memory-mapped)."""
    return RunRecord.of(read_checkpoint(path, mmap=True), path)


def build_model(
    config: dict[str, Any] | Any, rounding: Any = None, source: str | Path | None = None
) -> DeepSpectralClustering:
    """The model a run's config describes (a composed DictConfig or a record's dict): its ``model``
    section instantiated; ``rounding`` (a config or an object) replaces the run's own. ``source``:
    the file a record's config was read from; a record that does not build names it and the
    keys the model does not take (``InvalidInputError``)."""
    if source is None:
        return _instantiate_model(config, rounding)
    import inspect

    accepted = set(inspect.signature(DeepSpectralClustering.__init__).parameters) - {"self"}
    unknown = sorted(set(config["model"]) - accepted - {"_target_", "_recursive_", "_convert_"})
    if unknown:
        raise InvalidInputError(
            f"{source}: its model config has keys DeepSpectralClustering does not take: "
            f"{', '.join(unknown[:5])}. It was not written by this version of dsc"
        )
    try:
        return _instantiate_model(config, rounding)
    except hydra.errors.InstantiationException as error:
        reason = str(error).strip().splitlines()[-1][:300]
        raise InvalidInputError(f"{source}: its model config does not build ({reason})") from error


def _instantiate_model(config: dict[str, Any] | Any, rounding: Any) -> DeepSpectralClustering:
    if rounding is None:
        return hydra.utils.instantiate(config["model"])
    if isinstance(rounding, Mapping):  # built apart: Hydra would merge a config into the run's own
        rounding = hydra.utils.instantiate(rounding)
    return hydra.utils.instantiate(config["model"], rounding=rounding)


def load_model(
    path: str | Path, rounding: Any = None, trusted_targets: Any = ()
) -> tuple[DeepSpectralClustering, RunRecord]:
    """The checkpoint's model with its weights, in eval mode, and the run's record; a record that
    names untrusted code is refused before anything is built (``check_trusted``)."""
    checkpoint = read_checkpoint(path)
    record = RunRecord.of(checkpoint, path)
    check_trusted(record.config, path, trusted_targets)
    record.model_counts(path)
    model = build_model(record.config, rounding, source=path)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as error:  # missing, extra or reshaped weights
        reason = str(error).strip().splitlines()[0][:300]
        raise InvalidInputError(f"{path}: its weights do not fit the network it records ({reason})") from None
    return model.eval(), record


PROJECTION_ROWS = 65536  # validation embedding rows the projection is fitted on, at most
PROJECTION_SPREAD = 0.01  # the share of projected values left out at either end of each colour range


class CheckpointRecord(pl.Callback):
    """Writes the record into every checkpoint of a run and, when the run resumes, puts torch's
    random state back. ``config``: the resolved config; ``overrides``: its command-line overrides;
    ``class_names``: the validation data's, or None; ``training_images``: the training data measured.

    The embedding projection is fitted at the end of every validation of training on up to
    ``PROJECTION_ROWS`` non-void pixels of the validation batches' embedding view (the embeddings, or
    the class probabilities of a model without them), spread evenly over the batches."""

    def __init__(
        self,
        config: dict[str, Any],
        overrides: list[str],
        class_names: list[str] | None,
        training_images: TrainingImages | None = None,
    ) -> None:
        self.config = config
        self.overrides = list(overrides)
        self.class_names = None if class_names is None else list(class_names)
        self.training_images = training_images
        self.projection: EmbeddingProjection | None = None
        self._rows: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not isinstance(outputs, Mapping):
            return
        features, truth = outputs["embeddings"].detach(), batch["instances"]  # (B, d, H, W), (B, H, W)
        batches = max(1, int(trainer.num_val_batches[0]) if trainer.num_val_batches else 1)
        share = max(1, PROJECTION_ROWS // batches)
        picks = torch.nonzero(truth.flatten() != VOID).squeeze(1)  # gather the chosen pixels only
        if len(picks) > share:
            picks = picks[torch.linspace(0, len(picks) - 1, share, device=picks.device).long()]
        height, width = truth.shape[-2:]
        image, pixel = picks // (height * width), picks % (height * width)
        rows = features[image, :, pixel // width, pixel % width]  # (N, d)
        self._rows.append(rows.float().cpu())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = torch.cat(self._rows) if self._rows else None
        if rows is not None and len(rows) >= 2:
            self.projection = EmbeddingProjection.fit(rows, PROJECTION_SPREAD)
        self._rows = []

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG] = self.config
        checkpoint[OVERRIDES] = self.overrides
        checkpoint[CLASS_NAMES] = self.class_names
        checkpoint[TRAINING_IMAGES] = (
            None if self.training_images is None else self.training_images.as_record()
        )
        checkpoint[PROJECTION] = None if self.projection is None else self.projection.as_record()
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
