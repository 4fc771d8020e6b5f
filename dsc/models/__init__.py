"""Embedding networks: (B, 3, H, W) images → (B, d, H, W) pixel embeddings."""

from dsc.models.small_fcn import SmallFCN

__all__ = ["SmallFCN"]
