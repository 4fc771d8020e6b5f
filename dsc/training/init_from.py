"""``model.init_from``: start training from another run's weights (a semantic network, as the paper
retrains FCN-8s for instances), every weight but the backbone's last layers copied."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from dsc.backbones import HasLastLayers
from dsc.contracts import InvalidInputError, MissingFileError

log = logging.getLogger(__name__)
# How a file's keys may name the backbone's: a dsc (Lightning) checkpoint's, the network's own, or a
# bare library model's inside dsc's wrapper (``network.`` in TorchvisionSegmentation, SmpSegmentation).
KEY_FORMS = (("backbone.", ""), ("", ""), ("", "network."))


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint (its ``state_dict``) or state-dict file, read with
    ``weights_only=True`` (pickled code is refused)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"model.init_from={path} does not exist: pass a checkpoint (<run>/checkpoints/last.ckpt) "
            "or a state-dict file"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling, zip and EOF errors: not a plain tensor file
        raise InvalidInputError(
            f"model.init_from={path} cannot be read with weights_only=True ({type(error).__name__}: "
            f"{error}): dsc reads checkpoints and state dicts of tensors only"
        ) from error
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not any(isinstance(value, Tensor) for value in state.values()):
        raise InvalidInputError(f"model.init_from={path} holds no state dict of tensors")
    return {key: value for key, value in state.items() if isinstance(value, Tensor)}


def _as_backbone_keys(state: dict[str, Tensor], own: dict[str, Tensor]) -> dict[str, Tensor]:
    """The file's tensors under the backbone's names: the key form (``KEY_FORMS``) naming most of
    the backbone's weights."""
    best: dict[str, Tensor] = {}
    for strip, add in KEY_FORMS:
        renamed = {add + key[len(strip) :]: value for key, value in state.items() if key.startswith(strip)}
        if sum(key in own for key in renamed) > sum(key in own for key in best):
            best = renamed
    return best


def initialize_from(backbone: nn.Module, path: str | Path) -> list[str]:
    """Copy the weights of the file at ``path`` into ``backbone``, all but those of its
    ``last_layers`` (``HasLastLayers``), which keep their fresh initialisation. Returns the
    file's keys not copied (the last layers', and any the backbone lacks, such as an auxiliary
    head's), which are also logged. Refused, naming the first such key: a backbone weight
    (other than the last layers') that the file lacks or holds in another shape."""
    if not isinstance(backbone, HasLastLayers):
        raise InvalidInputError(
            f"model.init_from needs a backbone that names its last layers (last_layers); "
            f"{type(backbone).__name__} does not"
        )
    own = backbone.state_dict()
    state = _as_backbone_keys(read_weights(path), own)
    prefixes = tuple(f"{layer}." for layer in backbone.last_layers)
    last = {key for key in own if key.startswith(prefixes)}
    for key, tensor in own.items():
        if key in last:
            continue
        if key not in state:
            raise InvalidInputError(
                f"model.init_from={path} is not a {type(backbone).__name__} of this shape: it lacks "
                f"{key} (found {len(state)} matching keys)"
            )
        if state[key].shape != tensor.shape:
            raise InvalidInputError(
                f"model.init_from={path} is another architecture or size: {key} is "
                f"{tuple(state[key].shape)} there and {tuple(tensor.shape)} here"
            )
    copied = {key: value for key, value in state.items() if key in own and key not in last}
    backbone.load_state_dict(copied, strict=False)
    skipped = sorted(set(state) - set(copied))
    log.info(
        "model.init_from=%s: copied %d weights; kept the last layers (%s) fresh%s",
        path,
        len(copied),
        ", ".join(backbone.last_layers),
        f"; not copied: {', '.join(skipped)}" if skipped else "",
    )
    return skipped
