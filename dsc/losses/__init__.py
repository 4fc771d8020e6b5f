"""Losses that train an embedding network towards the oracle adjacency (paper, Section 2.2)."""

from dsc.losses.spectral import spectral_loss

__all__ = ["spectral_loss"]
