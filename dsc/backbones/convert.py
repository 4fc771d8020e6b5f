"""Any semantic-segmentation ``nn.Module`` as a dsc backbone: its final classifier replaced by one of
``out_channels`` (d embedding + C class-score channels), its output up-sampled to the input size.

``convert(module, out_channels)`` finds the classifier (torchvision's ``classifier[-1]``, smp's
``segmentation_head[0]``, or the attribute path you give) and returns a ``ConvertedSegmentation``;
``backbone=custom backbone.network._target_=my.module.Net [backbone.convert_from=head.conv]`` does
the same from the command line (``converted``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import hydra
import torch.nn.functional as F
from torch import Tensor, nn

from dsc.contracts import InvalidInputError

# Where well-known libraries keep their final classifier, tried in this order.
KNOWN_CLASSIFIERS = ("segmentation_head.0", "classifier.-1", "classifier", "head", "fc")


@runtime_checkable
class HasLastLayers(Protocol):
    """A backbone that names the layers giving its d + C output channels (attribute paths within
    it), which ``model.init_from`` leaves freshly initialised (``dsc.training.init_from``)."""

    last_layers: tuple[str, ...]


def _get(module: nn.Module, path: str) -> nn.Module:
    for name in path.split("."):
        module = module[int(name)] if name.lstrip("-").isdigit() else getattr(module, name)
    return module


def _set(module: nn.Module, path: str, layer: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = _get(module, parent_path) if parent_path else module
    if name.lstrip("-").isdigit():
        parent[int(name)] = layer
    else:
        setattr(parent, name, layer)


def _resolved(module: nn.Module, path: str) -> str:
    """``path`` with negative indices as the positions they name (``classifier.-1`` → ``classifier.4``)."""
    parts, current = [], module
    for name in path.split("."):
        if name.lstrip("-").isdigit():
            index = int(name) % len(current)
            parts.append(str(index))
            current = current[index]
        else:
            parts.append(name)
            current = getattr(current, name)
    return ".".join(parts)


def find_classifier(module: nn.Module, path: str | None = None) -> str:
    """The attribute path of ``module``'s final classifier, a ``Conv2d`` (``path``, or the first of
    ``KNOWN_CLASSIFIERS`` that is one); ``InvalidInputError`` naming what was found otherwise."""
    candidates = [path] if path is not None else list(KNOWN_CLASSIFIERS)
    found = []
    for candidate in candidates:
        try:
            layer = _get(module, candidate)
        except (AttributeError, IndexError, TypeError):
            continue
        if isinstance(layer, nn.Conv2d):
            return _resolved(module, candidate)
        found.append(f"{candidate} is a {type(layer).__name__}")
    convolutions = [name for name, layer in module.named_modules() if isinstance(layer, nn.Conv2d)]
    last = f"; its last Conv2d is {convolutions[-1]}" if convolutions else "; it has no Conv2d"
    what = ", ".join(found) if found else f"no {' or '.join(candidates)}"
    raise InvalidInputError(
        f"cannot find the final classifier of {type(module).__name__}: {what}{last}. Name it with "
        "convert_from=<attribute path> (backbone.convert_from=… on the command line)"
    )


class ConvertedSegmentation(nn.Module):
    """A semantic network with a new final classifier: (B, 3, H, W) images (as the network expects
    them) → (B, out_channels, H, W) raw scores, up-sampled bilinearly where the network's map is
    coarser. A network returning a dict gives its ``out`` entry (torchvision's)."""

    def __init__(self, network: nn.Module, out_channels: int, classifier: str) -> None:
        super().__init__()
        old = _get(network, classifier)
        new = nn.Conv2d(old.in_channels, out_channels, old.kernel_size, old.stride, old.padding,
                        old.dilation, old.groups, old.bias is not None)  # fmt: skip
        _set(network, classifier, new)
        self.network = network
        self.last_layers = (f"network.{classifier}",)

    def forward(self, images: Tensor) -> Tensor:
        out = self.network(images)
        if isinstance(out, dict):
            out = out.get("out")
        if not isinstance(out, Tensor) or out.dim() != 4:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InvalidInputError(
                f"{type(self.network).__name__} returned {shape}, not (B, K, H', W') logits: a backbone "
                "must map (B, 3, H, W) images to a 4-D score map"
            )
        if out.shape[-2:] != images.shape[-2:]:
            out = F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return out


def convert(module: nn.Module, out_channels: int, classifier: str | None = None) -> ConvertedSegmentation:
    """``module`` (any ``nn.Module`` mapping (B, 3, H, W) to (B, K, H', W') logits, or a dict with
    ``out``) with its final classifier (``classifier``, an attribute path such as ``head.conv`` or
    ``classifier.-1``; None: found as ``find_classifier`` says) replaced by one of ``out_channels``."""
    if out_channels < 1:
        raise InvalidInputError(f"out_channels={out_channels}: a backbone needs at least one output channel")
    return ConvertedSegmentation(module, out_channels, find_classifier(module, classifier))


def converted(network: Any, out_channels: int, convert_from: str | None = None) -> ConvertedSegmentation:
    """``backbone=custom``: ``network`` (a module, or its config with ``_target_``) through ``convert``."""
    if not isinstance(network, nn.Module):
        network = hydra.utils.instantiate(network)
    if not isinstance(network, nn.Module):
        raise InvalidInputError(f"backbone.network built a {type(network).__name__}, not a torch nn.Module")
    return convert(network, out_channels, convert_from)
