"""The semantic baseline: FCN's per-pixel cross-entropy over class scores (the paper's FCN-8 row)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dsc.contracts import Batch, Head, NetworkOutputs


class SemanticCrossEntropy:
    """Mean cross-entropy of (B, C, H, W) class scores against a (B, H, W) class map over valid
    pixels; 0 (with a zero gradient) when a batch has none, never NaN.

    As an ``dsc.contracts.Objective`` it trains the class head towards the class map; class ids
    must be below the head's C (``model.num_classes``) or void.
    """

    heads: frozenset[Head] = frozenset({"classes"})

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index

    def __call__(self, logits: Tensor, classes: Tensor) -> Tensor:
        valid = (classes != self.ignore_index).sum()
        total = F.cross_entropy(logits.float(), classes, ignore_index=self.ignore_index, reduction="sum")
        return total / valid.clamp(min=1)

    def training_loss(self, outputs: NetworkOutputs, batch: Batch) -> Tensor:
        return self(outputs.class_logits, batch["classes"])

    def validation_loss(self, outputs: NetworkOutputs, batch: Batch) -> Tensor:
        return self(outputs.class_logits, batch["classes"])
