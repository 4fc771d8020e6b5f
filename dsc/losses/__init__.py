"""Losses that train an embedding network towards the oracle adjacency (paper, Section 2.2)."""

from dsc.losses.spectral import NORMS, SpectralLoss, spectral_loss, squared_residual_norms

__all__ = ["NORMS", "SpectralLoss", "spectral_loss", "squared_residual_norms"]
