"""The closed form of the squared-Frobenius spectral loss and the mean over images, shared by every
implementation (plain torch in ``spectral``, Triton in ``fused``, CPU chunks in ``rows_in_cache``)."""

from __future__ import annotations

import torch
from torch import Tensor


def squared_frobenius(gram: Tensor, sums: Tensor, sizes: Tensor) -> Tensor:
    """‖F Fᵀ − Y Yᵀ‖²_F = ‖FᵀF‖²_F − 2 ‖YᵀF‖²_F + Σ_c n_c² per image, from G = FᵀF (B, d, d),
    S = YᵀF (B, K, d) and the instance sizes n_c (B, K). Returns (B,)."""
    return gram.square().sum(dim=(1, 2)) - 2.0 * sums.square().sum(dim=(1, 2)) + sizes.square().sum(dim=1)


def mean_over_images(per_image: Tensor, has_pixels: Tensor) -> Tensor:
    """The mean of (B,) per-image losses over the images with valid pixels, without a host sync;
    0 with a zero gradient when none has any."""
    per_image = torch.where(has_pixels, per_image, 0.0)
    return per_image.sum() / has_pixels.sum().clamp(min=1)
