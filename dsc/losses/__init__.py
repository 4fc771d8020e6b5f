"""Losses that train an embedding network: the spectral loss towards the oracle adjacency (paper,
Section 2.2), and the losses it is compared with (discriminative, supervised contrastive)."""

from dsc.losses.contrastive import ContrastiveLoss
from dsc.losses.cross_entropy import SemanticCrossEntropy
from dsc.losses.discriminative import DiscriminativeLoss
from dsc.losses.joint import JointLoss
from dsc.losses.spectral import NORMS, SpectralLoss, spectral_loss, squared_residual_norms

__all__ = [
    "NORMS",
    "ContrastiveLoss",
    "DiscriminativeLoss",
    "JointLoss",
    "SemanticCrossEntropy",
    "SpectralLoss",
    "spectral_loss",
    "squared_residual_norms",
]
