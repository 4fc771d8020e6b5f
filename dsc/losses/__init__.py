"""Losses that train an embedding network towards the oracle adjacency (paper, Section 2.2)."""

from dsc.losses.cross_entropy import SemanticCrossEntropy
from dsc.losses.joint import JointLoss
from dsc.losses.spectral import NORMS, SpectralLoss, spectral_loss, squared_residual_norms

__all__ = [
    "NORMS",
    "JointLoss",
    "SemanticCrossEntropy",
    "SpectralLoss",
    "spectral_loss",
    "squared_residual_norms",
]
