"""The semantic baseline: FCN's per-pixel cross-entropy over class scores (the paper's FCN-8 row)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dsc.contracts import Batch, Head, NetworkOutputs


class SemanticCrossEntropy:
    """Cross-entropy of (B, C, H, W) class scores against a (B, H, W) class map: each image's mean
    over its valid pixels (0, with a zero gradient, for an image with none), averaged over the
    images, so that DDP processes that split a batch train as one process on it. Never NaN.

    As an ``dsc.contracts.Objective`` it trains the class head towards the class map; class ids
    must be below the head's C (``model.num_classes``) or void.
    """

    heads: frozenset[Head] = frozenset({"classes"})
    embedding_space: str | None = None

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index

    def __call__(self, logits: Tensor, classes: Tensor) -> Tensor:
        valid = (classes != self.ignore_index).flatten(1).sum(dim=1)
        per_pixel = F.cross_entropy(logits.float(), classes, ignore_index=self.ignore_index, reduction="none")
        return (per_pixel.flatten(1).sum(dim=1) / valid.clamp(min=1)).mean()

    def training_loss(
        self, outputs: NetworkOutputs, batch: Batch, generator: torch.Generator | None = None
    ) -> Tensor:
        """Over every valid pixel: no sample, so ``generator`` is unused."""
        return self(outputs.class_logits, batch["classes"])

    def validation_loss(self, outputs: NetworkOutputs, batch: Batch) -> Tensor:
        return self(outputs.class_logits, batch["classes"])
