"""The semantic baseline: FCN's per-pixel cross-entropy over class scores (the paper's FCN-8 row)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class SemanticCrossEntropy:
    """Mean cross-entropy of (B, C, H, W) class scores against a (B, H, W) class map over valid
    pixels; 0 (with a zero gradient) when a batch has none, never NaN.

    It trains raw scores (``unit_embeddings`` False) against the class map (``target``); keyword
    options meant for the spectral loss (``sample_size``, ``pixel_sample``) are accepted and unused.
    """

    target = "classes"
    unit_embeddings = False

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index

    def __call__(self, logits: Tensor, classes: Tensor, **_: object) -> Tensor:
        valid = (classes != self.ignore_index).sum()
        total = F.cross_entropy(logits, classes, ignore_index=self.ignore_index, reduction="sum")
        return total / valid.clamp(min=1)
