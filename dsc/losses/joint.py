"""One network, two heads: the spectral loss on the embedding and cross-entropy on the classes."""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.contracts import Batch, Head, NetworkOutputs
from dsc.losses.cross_entropy import SemanticCrossEntropy
from dsc.losses.spectral import SpectralLoss


class JointLoss(SpectralLoss):
    """``SpectralLoss`` (any norm, exact or sampled) on the embedding head plus ``class_weight`` ×
    ``SemanticCrossEntropy`` on the class head (``loss=spectral_joint``). Both terms are means
    (per image pair of pixels and per valid pixel), so a weight near 1 balances them."""

    heads: frozenset[Head] = frozenset({"embedding", "classes"})

    def __init__(
        self,
        norm: str = "frobenius",
        p: float | None = None,
        sample_size: int | None = None,
        ignore_index: int = 255,
        sampling: str = "uniform",
        fused: bool = True,
        class_weight: float = 1.0,
    ) -> None:
        super().__init__(norm, p, sample_size, ignore_index, sampling, fused)
        if class_weight < 0:
            raise ValueError(f"class_weight must be >= 0, got {class_weight}")
        self.class_weight = class_weight
        self.cross_entropy = SemanticCrossEntropy(ignore_index)

    def training_loss(
        self, outputs: NetworkOutputs, batch: Batch, generator: torch.Generator | None = None
    ) -> Tensor:
        spectral = super().training_loss(outputs, batch, generator)
        return spectral + self.class_weight * self.cross_entropy.training_loss(outputs, batch)

    def validation_loss(self, outputs: NetworkOutputs, batch: Batch) -> Tensor:
        spectral = super().validation_loss(outputs, batch)
        return spectral + self.class_weight * self.cross_entropy.validation_loss(outputs, batch)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", class_weight={self.class_weight!r})"
