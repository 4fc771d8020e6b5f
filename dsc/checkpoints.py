"""Loading dsc checkpoints safely (``weights_only``) and rebuilding their model from the saved
config (for ``dsc.predict``, ``dsc.evaluate`` and ``dsc.table1``; resuming is ``dsc.resume``'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dsc.module import DeepSpectralClustering


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by ``python -m dsc.train`` without executing pickled code;
    ``mmap=True`` maps the tensors instead of reading them (for a look at the saved config).

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one that is
    corrupt, holds pickled objects (which could run code), or lacks dsc's saved config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist: pass ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
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
    model.class_names = checkpoint.get("dsc_class_names")  # absent in checkpoints of dsc 0.1.0
    return model.eval(), checkpoint["dsc_config"]
