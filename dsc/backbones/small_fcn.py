"""A small fully convolutional embedding network that trains in minutes on a CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsc.contracts import InvalidInputError

NORMS = ("batch", "group")
CLASS_HEADS = ("fused", "context")


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

    forward: images (B, in_channels, H, W) → outputs (B, out_channels, H, W), not normalised (the
    LightningModule applies the paper's unit normalisation to the embedding channels). Any H, W ≥ 1.
    norm: ``batch`` (BatchNorm) or ``group`` (GroupNorm: per image, so results do not depend on
    how a batch is split between DDP processes; torch syncs BatchNorm across processes on GPUs only).
    class_head: where the last ``class_channels`` outputs (the class scores) come from: ``fused``,
    one 1×1 convolution with the embedding over the fused full-resolution features; or ``context``,
    their own 1×1 convolution over the context path, up-sampled, so that the class term's gradient
    does not compete with the embedding's for the fused features (docs/losses.md, the joint loss).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 16,
        width: int = 16,
        norm: str = "batch",
        class_channels: int = 0,
        class_head: str = "fused",
    ) -> None:
        super().__init__()
        if class_head not in CLASS_HEADS:
            raise InvalidInputError(
                f"backbone.class_head must be one of {', '.join(CLASS_HEADS)}, got {class_head!r}"
            )
        if not 0 <= class_channels <= out_channels:
            raise InvalidInputError(
                f"backbone.class_channels must lie in 0..out_channels ({out_channels}), got {class_channels}"
            )
        if class_head == "context" and class_channels == 0:
            raise InvalidInputError("backbone.class_head=context needs class scores (model.num_classes > 0)")
        self.stem = nn.Sequential(_conv_block(in_channels, width, norm), _conv_block(width, width, norm))
        self.context = nn.Sequential(
            _conv_block(width, 2 * width, norm, stride=2),
            *(_conv_block(2 * width, 2 * width, norm, dilation=d) for d in (1, 2, 4)),
        )
        fused_channels = out_channels - class_channels if class_head == "context" else out_channels
        self.fuse = _conv_block(3 * width, width, norm) if fused_channels else None
        self.head = nn.Conv2d(width, fused_channels, 1) if fused_channels else None
        self.class_head = nn.Conv2d(2 * width, class_channels, 1) if class_head == "context" else None
        # Fresh in a model initialised from another run's weights (model.init_from).
        self.last_layers = tuple(name for name in ("head", "class_head") if getattr(self, name) is not None)

    def forward(self, images: Tensor) -> Tensor:
        local = self.stem(images)
        coarse = self.context(local)
        outputs = []
        if self.head is not None:
            context = F.interpolate(coarse, size=local.shape[-2:], mode="bilinear", align_corners=False)
            outputs.append(self.head(self.fuse(torch.cat([local, context], dim=1))))
        if self.class_head is not None:
            outputs.append(
                F.interpolate(
                    self.class_head(coarse), size=local.shape[-2:], mode="bilinear", align_corners=False
                )
            )
        return torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]
