"""The spectral loss ‖F Fᵀ − A‖²_F of Barnes & Dubrawski, Section 2.2, without an n × n matrix.

With F the (n, d) embedding of an image's n valid pixels and Y its (n, k) one-hot instance matrix
(so A = Y Yᵀ), expanding the square gives

    ‖F Fᵀ − Y Yᵀ‖²_F = ‖FᵀF‖²_F − 2 ‖YᵀF‖²_F + Σ_c n_c²,

three terms of cost O(n·d²), O(n·d) and O(n). This module is the one place that computes it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _pixels_by_image(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Reshape ``(B, d, H, W)`` embeddings and ``(B, H, W)`` labels to ``(B, n, d)`` and ``(B, n)``."""
    if embeddings.dim() != 4 or labels.dim() != 3:
        raise ValueError(
            f"expected embeddings (B, d, H, W) and labels (B, H, W), "
            f"got {tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )
    batch, _, height, width = embeddings.shape
    if labels.shape != (batch, height, width):
        raise ValueError(f"labels {tuple(labels.shape)} do not match embeddings {tuple(embeddings.shape)}")
    return embeddings.flatten(2).transpose(1, 2), labels.flatten(1)


def _squared_residual_norms(features: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
    """‖F Fᵀ − A‖²_F per image over its valid pixels, in O(n·d²).

    features: (B, n, d); labels: (B, n) instance ids, any integers; valid: (B, n) bool.
    Returns (B,) in the dtype of ``features``.
    """
    batch, _, dim = features.shape
    features = torch.where(valid.unsqueeze(-1), features, 0.0)
    gram = features.transpose(1, 2) @ features  # (B, d, d) = FᵀF
    gram_term = gram.square().sum(dim=(1, 2))

    # Give every (image, instance) pair its own row: sums of F over each instance are YᵀF.
    image_index = torch.arange(batch, device=labels.device).unsqueeze(1).expand_as(labels)
    keys = torch.stack([image_index[valid], labels[valid]])
    instance_keys, instance_of_pixel = torch.unique(keys, dim=1, return_inverse=True)
    num_instances = instance_keys.shape[1]
    instance_sums = features.new_zeros(num_instances, dim)
    instance_sums.index_add_(0, instance_of_pixel, features[valid])
    instance_sizes = torch.bincount(instance_of_pixel, minlength=num_instances).to(features.dtype)
    image_of_instance = instance_keys[0]

    cross_term = features.new_zeros(batch).index_add_(0, image_of_instance, instance_sums.square().sum(dim=1))
    target_term = features.new_zeros(batch).index_add_(0, image_of_instance, instance_sizes.square())
    return gram_term - 2.0 * cross_term + target_term


def _sample_valid_pixels(valid: Tensor, sample_size: int, generator: torch.Generator | None) -> Tensor:
    """Draw ``sample_size`` pixel indices per image, uniformly with replacement among valid pixels.

    valid: (B, n) bool. Returns (B, m) int64 on ``valid``'s device; rows of images without a valid
    pixel hold arbitrary indices (the caller drops those images).
    """
    weights = valid.to(torch.float32)
    weights[~valid.any(dim=1)] = 1.0  # multinomial rejects all-zero rows
    return torch.multinomial(weights, sample_size, replacement=True, generator=generator)


def spectral_loss(
    embeddings: Tensor,
    labels: Tensor,
    ignore_index: int = 255,
    sample_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean over images of ‖F Fᵀ − A‖²_F / n², the paper's spectral loss (Section 2.2).

    embeddings: (B, d, H, W), each pixel's d-vector of unit length (the network's output).
    labels: (B, H, W) integer instance ids; ``ignore_index`` marks void pixels, which are left out.
    sample_size: ``None`` computes the loss exactly over all n valid pixels in O(n·d²). An integer
        m ≥ 2 draws m valid pixels per image uniformly with replacement and averages the squared
        residual over the m(m − 1) ordered pairs of distinct draws: an unbiased estimate of the
        exact value (each such pair is uniform over all n² pixel pairs), as in the paper.
    generator: random source for the sample, on the embeddings' device.

    Returns a scalar. Images without valid pixels are skipped; if no image has one, the result is a
    zero that still carries a (zero) gradient, never NaN.
    """
    features, flat_labels = _pixels_by_image(embeddings, labels)
    valid = flat_labels != ignore_index
    num_valid = valid.sum(dim=1)

    if sample_size is None:
        squared_norms = _squared_residual_norms(features, flat_labels, valid)
        per_image = squared_norms / num_valid.clamp(min=1).to(features.dtype).square()
    else:
        if sample_size < 2:
            raise ValueError(f"sample_size must be at least 2 (or None for exact), got {sample_size}")
        picks = _sample_valid_pixels(valid, sample_size, generator)
        sampled = features.gather(1, picks.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
        sampled_labels = flat_labels.gather(1, picks)
        all_pairs = _squared_residual_norms(sampled, sampled_labels, torch.ones_like(picks, dtype=torch.bool))
        # Pairs of a draw with itself are biased (their target is always 1): drop them.
        same_draw = (sampled.square().sum(dim=-1) - 1.0).square().sum(dim=1)
        per_image = (all_pairs - same_draw) / (sample_size * (sample_size - 1))

    # Masked mean without a host sync; an empty batch gives 0 with a zero gradient.
    has_pixels = num_valid > 0
    per_image = torch.where(has_pixels, per_image, 0.0)
    return per_image.sum() / has_pixels.sum().clamp(min=1)
