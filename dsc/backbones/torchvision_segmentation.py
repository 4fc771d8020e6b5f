"""torchvision's segmentation networks as embedding backbones: their last layer gives d channels."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from dsc.backbones.fcn8 import IMAGENET_MEAN, IMAGENET_STD
from dsc.contracts import InvalidInputError, MissingFileError

ARCHITECTURES = ("fcn_resnet50", "deeplabv3_resnet50", "lraspp_mobilenet_v3_large")


class TorchvisionSegmentation(nn.Module):
    """A torchvision segmentation model whose final layer has ``out_channels`` outputs.

    forward: (B, 3, H, W) images in [0, 1] → (B, out_channels, H, W), unit-normalised per pixel
    unless ``unit_normalize`` is False. ``weights_path``: a state dict of the same architecture
    (e.g. torchvision's COCO-trained file) whose tensors are copied where shapes match, so the
    new final layer keeps its fresh initialisation; nothing is downloaded.
    """

    def __init__(
        self,
        architecture: str = "deeplabv3_resnet50",
        out_channels: int = 21,
        unit_normalize: bool = True,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise InvalidInputError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}"
            )
        builder = getattr(torchvision.models.segmentation, architecture)
        self.network = builder(weights=None, weights_backbone=None, num_classes=out_channels)
        self.unit_normalize = unit_normalize
        last = ("low_classifier", "high_classifier") if architecture.startswith("lraspp") else ("4",)
        self.last_layers = tuple(f"network.classifier.{name}" for name in last)  # model.init_from
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights_path is not None:
            self.load_matching(weights_path)

    def load_matching(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(
                f"backbone weights {path} not found: download the torchvision file for "
                "this architecture on a machine with internet and pass its path"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        own = self.network.state_dict()
        matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not matching:
            raise InvalidInputError(f"{path} holds no tensor of this {type(self.network).__name__}")
        self.network.load_state_dict(matching, strict=False)

    def forward(self, images: Tensor) -> Tensor:
        out = self.network((images - self.mean) / self.std)["out"]
        return F.normalize(out, dim=1) if self.unit_normalize else out
