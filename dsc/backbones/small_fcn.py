"""A small fully convolutional embedding network that trains in minutes on a CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsc.contracts import InvalidInputError

NORMS = ("batch", "group")


def _normalization(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise InvalidInputError(f"backbone.norm must be one of {', '.join(NORMS)}, got {kind!r}")


def _conv_block(
    in_channels: int, out_channels: int, norm: str, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False),
        _normalization(norm, out_channels),
        nn.ReLU(inplace=True),
    )


class SmallFCN(nn.Module):
    """Full-resolution features, a dilated context path at half resolution, and a skip connection.

    forward: images (B, in_channels, H, W) → embeddings (B, out_channels, H, W), not normalised
    (the LightningModule applies the paper's unit normalisation). Any H, W ≥ 1.
    norm: ``batch`` (BatchNorm) or ``group`` (GroupNorm: per image, so results do not depend on
    how a batch is split between DDP processes; torch syncs BatchNorm across processes on GPUs only).
    """

    def __init__(
        self, in_channels: int = 3, out_channels: int = 16, width: int = 16, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_block(in_channels, width, norm), _conv_block(width, width, norm))
        self.context = nn.Sequential(
            _conv_block(width, 2 * width, norm, stride=2),
            *(_conv_block(2 * width, 2 * width, norm, dilation=d) for d in (1, 2, 4)),
        )
        self.fuse = _conv_block(3 * width, width, norm)
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, images: Tensor) -> Tensor:
        local = self.stem(images)
        context = F.interpolate(
            self.context(local), size=local.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.head(self.fuse(torch.cat([local, context], dim=1)))
