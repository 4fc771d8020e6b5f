"""Drawing the pixels of the sampled spectral loss, on whatever device the labels are."""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.ops.grouping import group

SAMPLINGS = ("uniform", "balanced")


def sample_pixels(
    labels: Tensor,
    sample_size: int,
    sampling: str = "uniform",
    ignore_index: int = 255,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Indices of ``sample_size`` valid pixels per image, drawn with replacement.

    labels: (B, H, W) or (B, n) instance ids. sampling: ``uniform`` over valid pixels (the
    paper's unbiased estimator), or ``balanced``: every instance of the image equally likely, then
    a uniform pixel within it, so small objects are seen as often as large ones (this estimates a
    loss reweighted towards small instances). Returns (B, m) int64 flat pixel indices on the labels'
    device; images without valid pixels get arbitrary indices (the loss skips them).
    """
    if sample_size < 2:
        raise ValueError(f"sample_size must be at least 2, got {sample_size}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    flat = labels.flatten(1)
    valid = flat != ignore_index
    weights = valid.to(torch.float32)
    if sampling == "balanced" and bool(valid.any()):
        image = torch.arange(flat.shape[0], device=flat.device).unsqueeze(1).expand_as(flat)
        instance_of_pixel, _, sizes = group(image[valid], flat[valid])
        weights[valid] = 1.0 / sizes[instance_of_pixel].to(torch.float32)
    weights[~valid.any(dim=1)] = 1.0  # multinomial rejects all-zero rows
    return torch.multinomial(weights, sample_size, replacement=True, generator=generator)
