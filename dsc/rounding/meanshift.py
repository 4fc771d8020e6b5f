"""Mean-shift with a flat kernel (Comaniciu & Meer, 2002), batched over images: the rounding of the
discriminative loss (De Brabandere et al., 2017), whose clusters are balls of radius δ_v.

The algorithm is scikit-learn's ``MeanShift`` (``bin_seeding=False``, ``cluster_all=True``):

1. every seed moves to the mean of the points within ``bandwidth`` of it until it moves less than
   10⁻³ · bandwidth, or ``max_iterations`` times; its intensity is the number of points it had
   within reach on its last step;
2. centres sorted by intensity (ties: by coordinates, largest first) suppress every later centre
   within ``bandwidth`` of them;
3. each pixel takes the nearest remaining centre; clusters are numbered in the order of step 2.

Seeds are all valid pixels and the means are taken over all of them, as scikit-learn does, when an
image has at most ``max_seeds`` (and ``max_points``) valid pixels; larger images use that many
pixels chosen by hashed pixel ids (the same for an image alone or padded into a batch). Every image
of a batch iterates together: one (B, seeds, points) product per step, on the rows' device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.rounding.hashing import draw_seed, hash_uniform
from dsc.rounding.kwikcluster import as_batch

_STOP_FRACTION = 1e-3  # scikit-learn's stop_thresh = 1e-3 · bandwidth
_ASSIGN_ELEMENTS = 2**24  # bound on B × pixels × centres compared at a time


def _chosen(
    mask: Tensor, count: int, seed: int, stream: int, pixel_ids: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(B, count) indices of valid pixels: all of them (in index order) when an image has at most
    ``count``, else ``count`` chosen by hashed pixel ids; and whether each index is a valid pixel."""
    batch, pixels = mask.shape
    ids = pixel_ids if pixel_ids is not None else torch.arange(pixels, device=mask.device)
    priority = hash_uniform(seed, stream, ids.expand(batch, -1) if ids.dim() == 1 else ids, mask.device)
    # Valid pixels first: all of them by index when they fit, else the lowest priorities.
    fits = mask.sum(dim=1, keepdim=True) <= count
    order_key = torch.where(
        fits, torch.arange(pixels, device=mask.device, dtype=torch.float64) / pixels, priority
    )
    order_key = torch.where(mask, order_key, 2.0)
    keys, indices = torch.topk(order_key, min(count, pixels), dim=1, largest=False, sorted=True)
    return indices, keys < 2.0


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """(B, S, P) squared Euclidean distances between (B, S, d) and (B, P, d), clamped at 0."""
    return (
        a.square().sum(-1, keepdim=True) + b.square().sum(-1).unsqueeze(1) - 2 * a @ b.transpose(1, 2)
    ).clamp(min=0)


def _gather(rows: Tensor, indices: Tensor) -> Tensor:
    return rows.gather(1, indices.unsqueeze(-1).expand(-1, -1, rows.shape[-1]))


def _lexicographic_order(intensity: Tensor, centres: Tensor) -> Tensor:
    """(B, S) order of centres by intensity, then coordinates, largest first (stable sorts)."""
    order = torch.arange(intensity.shape[1], device=intensity.device).expand_as(intensity)
    for column in reversed(range(centres.shape[-1])):
        values = centres[..., column].gather(1, order)
        order = order.gather(1, torch.sort(values, dim=1, descending=True, stable=True).indices)
    values = intensity.gather(1, order)
    return order.gather(1, torch.sort(values, dim=1, descending=True, stable=True).indices)


def meanshift(
    rows: Tensor,
    bandwidth: float = 0.5,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
    max_seeds: int = 256,
    max_points: int = 4096,
    max_iterations: int = 300,
) -> Tensor:
    """Cluster rows by flat-kernel mean-shift (module docstring).

    rows: (N, d) or (B, N, d) embeddings in any space (the discriminative loss's raw embeddings).
    bandwidth: the kernel's radius (δ_v of the loss that trained the embedding).
    generator: seeds the choice of seeds and points of images larger than ``max_seeds`` /
        ``max_points``; mask, pixel_ids: as for ``kwikcluster``.
    Returns (N,) or (B, N) int64 labels 0..k−1 per image (−1 outside ``mask``).
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    if min(max_seeds, max_points, max_iterations) < 1:
        raise ValueError("max_seeds, max_points and max_iterations must be >= 1")
    rows, mask, unbatched = as_batch(rows, mask)
    rows = rows.float()
    seed = draw_seed(generator)
    seed_index, seed_valid = _chosen(mask, max_seeds, seed, 1, pixel_ids)
    point_index, point_valid = _chosen(mask, max_points, seed, 2, pixel_ids)
    points = _gather(rows, point_index)
    centres = _gather(rows, seed_index)
    intensity = torch.zeros(seed_valid.shape, dtype=torch.int64, device=rows.device)
    active = seed_valid.clone()
    radius, stop = bandwidth**2, (_STOP_FRACTION * bandwidth) ** 2
    for _ in range(max_iterations):
        within = (_squared_distances(centres, points) <= radius) & point_valid.unsqueeze(1)
        count = within.sum(dim=-1)
        moved = (within.to(points.dtype) @ points) / count.clamp(min=1).unsqueeze(-1)
        step = active & (count > 0)
        intensity = torch.where(step, count, intensity)
        shift = (moved - centres).square().sum(-1)
        centres = torch.where(step.unsqueeze(-1), moved, centres)
        active = step & (shift > stop)
        if not bool(active.any()):
            break
    kept = seed_valid & (intensity > 0)

    order = _lexicographic_order(torch.where(kept, intensity, -1), centres)
    centres, kept = _gather(centres, order), kept.gather(1, order)
    near = _squared_distances(centres, centres) <= radius
    unique = kept.clone()
    for index in range(unique.shape[1]):
        keep = unique[:, index].clone()
        unique &= ~(near[:, index] & keep.unsqueeze(1))
        unique[:, index] = keep
    number = unique.cumsum(dim=1) - 1  # each remaining centre's cluster number

    labels = torch.full(mask.shape, -1, dtype=torch.int64, device=rows.device)
    chunk = max(1, _ASSIGN_ELEMENTS // max(1, rows.shape[0] * unique.shape[1]))
    for start in range(0, rows.shape[1], chunk):
        distances = _squared_distances(rows[:, start : start + chunk], centres)
        nearest = distances.masked_fill(~unique.unsqueeze(1), float("inf")).argmin(dim=-1)
        labels[:, start : start + chunk] = number.gather(1, nearest)
    labels = labels.masked_fill(~mask, -1)
    return labels.squeeze(0) if unbatched else labels
