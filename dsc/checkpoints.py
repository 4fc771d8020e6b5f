"""Loading dsc checkpoints safely (``weights_only``), rebuilding their model from the saved config,
and finding the checkpoint and W&B run a resumed run continues."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from dsc.module import DeepSpectralClustering

log = logging.getLogger(__name__)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``python -m dsc.train`` without executing pickled code.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one that is
    corrupt, holds pickled objects (which could run code), or lacks dsc's saved config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist: pass ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, zip and EOF errors all mean: not a plain checkpoint
        raise ValueError(
            f"cannot load checkpoint {path} with weights_only=True: it is corrupt or holds pickled "
            f"objects that could run code, and dsc does not execute them ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "dsc_config" not in checkpoint:
        raise ValueError(
            f"{path} is not a dsc checkpoint (no state_dict and dsc_config): train it with dsc.train"
        )
    return checkpoint


def load_model(path: str | Path, rounding: Any = None) -> tuple[DeepSpectralClustering, dict[str, Any]]:
    """Model with the checkpoint's weights, in eval mode, and the run's config."""
    checkpoint = load_checkpoint(path)
    model = DeepSpectralClustering.from_config(checkpoint["dsc_config"], rounding)
    model.load_state_dict(checkpoint["state_dict"])
    model.run_config = checkpoint["dsc_config"]
    return model.eval(), checkpoint["dsc_config"]


def resume_path(ckpt_path: str | None, checkpoint_dir: Path) -> str | None:
    """The checkpoint ``dsc.train`` resumes from: ``ckpt_path`` itself, or for ``last`` the run's
    ``checkpoint_dir/last.ckpt`` when it exists (a first start, or a requeued job that had not yet
    saved one, then starts from scratch). A named file that is missing raises, naming it."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        last = checkpoint_dir / "last.ckpt"
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        log.info("ckpt_path=last: no %s yet, starting from scratch", last)
        return None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path} does not exist: give a .ckpt file, or ckpt_path=last with the "
            "interrupted run's directory (hydra.run.dir=<run dir>) to resume its checkpoints/last.ckpt"
        )
    return ckpt_path


def wandb_run_id(ckpt_path: str | None) -> str | None:
    """The W&B run id saved in a checkpoint by ``DeepSpectralClustering`` (None without one), so a
    resumed run logs into the same W&B run. Memory-maps the file: the weights are not read."""
    if ckpt_path is None:
        return None
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    return checkpoint.get("dsc_wandb_run_id")
