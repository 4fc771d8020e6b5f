"""KwikCluster (Ailon, Charikar & Newman, 2008): the paper's rounding of embeddings to a partition.

Visit pixels in a random order; each pixel not yet clustered becomes a pivot and takes every
unclustered pixel whose inner product with it exceeds the threshold. Section 2.3 and Theorem 2.2
of the paper bound the loss of the rounded partition by 6× the network's loss.

All images of a batch advance together: each step picks every image's next pivot at once (an
argmin over hashed priorities), so the work per step is one batched (B, N, d)·(B, d) product and
the host checks for completion only every few steps, never per pivot.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.rounding.hashing import draw_seed, hash_keys, hash_uniform

_NO_PRIORITY = 2**33  # above every hash key: pixels already clustered or left out
_STEPS_BETWEEN_CHECKS = 8


def as_batch(rows: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, bool]:
    """Accept (N, d) or (B, N, d) rows and an optional (N,) / (B, N) mask; return batched both."""
    if rows.dim() not in (2, 3):
        raise ValueError(f"expected (N, d) or (B, N, d) rows, got shape {tuple(rows.shape)}")
    unbatched = rows.dim() == 2
    if unbatched:
        rows = rows.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if mask is None:
        mask = torch.ones(rows.shape[:2], dtype=torch.bool, device=rows.device)
    if mask.shape != rows.shape[:2]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match rows {tuple(rows.shape)}")
    if not torch.isfinite(rows).all():
        raise ValueError("rounding got non-finite embeddings (NaN or inf): check the network's output")
    return rows, mask, unbatched


def _kwikcluster(
    rows: Tensor,
    mask: Tensor,
    threshold: float,
    seed: int,
    soft_power: float | None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """Batched KwikCluster on (B, N, d) rows; pixels outside ``mask`` get label −1. The visiting
    order hashes ``pixel_ids`` (default: the pixel's index 0..N−1)."""
    batch, num_pixels, _ = rows.shape
    labels = torch.full((batch, num_pixels), -1, dtype=torch.int64, device=rows.device)
    if num_pixels == 0:
        return labels
    pixels = num_pixels if pixel_ids is None else pixel_ids
    priority = hash_keys(seed, 0, pixels, rows.device)
    unclustered = mask.clone()
    next_label = torch.zeros(batch, dtype=torch.int64, device=rows.device)
    step = 0
    while step % _STEPS_BETWEEN_CHECKS or bool(unclustered.any()):
        pivot = torch.where(unclustered, priority, _NO_PRIORITY).argmin(dim=1)  # (B,)
        active = unclustered.gather(1, pivot.unsqueeze(1))  # (B, 1): images with work left
        pivot_rows = rows.gather(1, pivot.view(batch, 1, 1).expand(-1, 1, rows.shape[2]))
        similarity = (rows @ pivot_rows.transpose(1, 2)).squeeze(2)  # (B, N)
        if soft_power is None:
            joins = similarity > threshold
        else:
            # The authors' soft variant: join with probability x^p / (x^p + (1 − x)^p), written as a
            # logistic of p · log(x / (1 − x)) so that large p does not underflow.
            x = similarity.double().clamp(0.0, 1.0)
            probability = torch.sigmoid(soft_power * (torch.log(x) - torch.log1p(-x)))
            joins = hash_uniform(seed, step + 1, pixels, rows.device) < probability
        joins &= unclustered
        joins.scatter_(1, pivot.unsqueeze(1), True)
        joins &= active
        labels = torch.where(joins, next_label.unsqueeze(1), labels)
        unclustered &= ~joins
        next_label += active.squeeze(1)
        step += 1
    return labels


def kwikcluster(
    rows: Tensor,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """Cluster rows by KwikCluster in inner-product space.

    rows: (N, d) or batched (B, N, d), normally of unit length (v_i·v_j ∈ [−1, 1]).
    threshold: a pixel joins a pivot's cluster when v_i·v_p > threshold (the paper: ½).
    generator: a CPU ``torch.Generator`` that seeds the visiting order; the order itself is hashed
        on the rows' device, so one seed gives the same labels on CPU and GPU (except where a
        similarity lies within float rounding of the threshold), and the same labels for an image
        whether it is rounded alone or in a batch.
    mask: (N,) or (B, N) bool, the pixels to cluster; the others get label −1.
    pixel_ids: (N,) or (B, N) int64 ids that the visiting order hashes instead of the pixel indices
        (``dsc.rounding.hashing.position_ids`` keeps an image's order when it is padded into a batch).

    Returns (N,) or (B, N) int64 labels 0..k−1 per image, numbered in the order pivots were visited.
    """
    rows, mask, unbatched = as_batch(rows, mask)
    labels = _kwikcluster(rows, mask, threshold, draw_seed(generator), None, pixel_ids)
    return labels.squeeze(0) if unbatched else labels


def kwikcluster_soft(
    rows: Tensor,
    power: float = 10.0,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """The authors' soft KwikCluster: a pixel of similarity x to the pivot joins with probability
    x^p / (x^p + (1 − x)^p) (x clamped to [0, 1]; ½ at x = ½, a hard threshold as p → ∞).

    Shapes, ``generator``, ``mask`` and ``pixel_ids`` as for ``kwikcluster``; the coins are hashed,
    so CPU and GPU agree for one seed.
    """
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")
    rows, mask, unbatched = as_batch(rows, mask)
    labels = _kwikcluster(rows, mask, 0.5, draw_seed(generator), power, pixel_ids)
    return labels.squeeze(0) if unbatched else labels
