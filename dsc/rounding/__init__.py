"""Rounding: turning pixel embeddings into a partition of the pixels (paper, Section 2.3)."""

from dsc.rounding.kwikcluster import kwikcluster

__all__ = ["kwikcluster"]
