"""Mean-shift with a flat kernel (Comaniciu & Meer, 2002), batched over images: the rounding of the
discriminative loss (De Brabandere et al., 2017), whose clusters are balls of radius δ_v with
means 2δ_d apart.

The algorithm is scikit-learn's ``MeanShift`` (``bin_seeding=False``, ``cluster_all=True``):

1. every seed moves to the mean of the points within ``bandwidth`` of it until it moves less than
   10⁻³ · bandwidth, or ``max_iterations`` times; its intensity is the number of points it had
   within reach on its last step;
2. centres sorted by intensity (ties: by coordinates, largest first) suppress every later centre
   within ``bandwidth`` of them;
3. each pixel takes the nearest remaining centre; clusters are numbered in the order of step 2.

Seeds are all valid pixels and the means are taken over all of them, as scikit-learn does, when an
image has at most ``max_seeds`` (and ``max_points``) valid pixels. Larger images take means over
``max_points`` pixels and start ``max_seeds`` seeds at a time, chosen by hashed pixel ids (the same
for an image alone or padded into a batch); the pixels left farther than 2 · ``bandwidth`` from
every centre seed the next round, so every object gets a seed however small. Every image of a batch
iterates together, one (B, seeds, points) product per step on the rows' device, and an image whose
seeds have all stopped drops out of the computation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.rounding.hashing import draw_seed, hash_uniform
from dsc.rounding.kwikcluster import as_batch

_STOP_FRACTION = 1e-3  # scikit-learn's stop_thresh = 1e-3 · bandwidth
# A pixel this many bandwidths from every centre seeds another round: pixels just outside a
# cluster's ball (a loss's margin leaves them there) do not, the pixels of an unseeded object do.
_COVERED = 2.0
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


def _shift(
    centres: Tensor,
    active: Tensor,
    points: Tensor,
    point_valid: Tensor,
    bandwidth: float,
    max_iterations: int,
) -> tuple[Tensor, Tensor]:
    """Move (B, S, d) centres (``active`` ones) to the mean of the points within ``bandwidth``
    until they stop (scikit-learn's criterion); returns the centres and their (B, S) intensities.
    Images whose centres have all stopped drop out of the computation."""
    radius, stop = bandwidth**2, (_STOP_FRACTION * bandwidth) ** 2
    intensity = torch.zeros(active.shape, dtype=torch.int64, device=centres.device)
    for _ in range(max_iterations):
        images = active.any(dim=1).nonzero().squeeze(1)
        if images.numel() == 0:
            break
        moving, own_points = centres[images], points[images]
        within = (_squared_distances(moving, own_points) <= radius) & point_valid[images].unsqueeze(1)
        count = within.sum(dim=-1)
        moved = (within.to(own_points.dtype) @ own_points) / count.clamp(min=1).unsqueeze(-1)
        step = active[images] & (count > 0)
        intensity[images] = torch.where(step, count, intensity[images])
        shift = (moved - moving).square().sum(-1)
        centres[images] = torch.where(step.unsqueeze(-1), moved, moving)
        active[images] = step & (shift > stop)
    return centres, intensity


def _nearest(rows: Tensor, centres: Tensor, usable: Tensor) -> tuple[Tensor, Tensor]:
    """(B, N) index of each row's nearest usable centre (of (B, S, d)) and its squared distance."""
    batch, pixels = rows.shape[:2]
    index = torch.zeros(batch, pixels, dtype=torch.int64, device=rows.device)
    distance = torch.full((batch, pixels), float("inf"), device=rows.device)
    chunk = max(1, _ASSIGN_ELEMENTS // max(1, batch * centres.shape[1]))
    for start in range(0, pixels, chunk):
        distances = _squared_distances(rows[:, start : start + chunk], centres)
        distances = distances.masked_fill(~usable.unsqueeze(1), float("inf"))
        distance[:, start : start + chunk], index[:, start : start + chunk] = distances.min(dim=-1)
    return index, distance


def meanshift(
    rows: Tensor,
    bandwidth: float = 1.5,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
    max_seeds: int = 64,
    max_points: int = 1024,
    max_iterations: int = 300,
    max_rounds: int = 4,
) -> Tensor:
    """Cluster rows by flat-kernel mean-shift (module docstring).

    rows: (N, d) or (B, N, d) embeddings in any space (the discriminative loss's raw embeddings).
    bandwidth: the kernel's radius (δ_d of the discriminative loss that trained the embedding).
    max_seeds, max_points: images with more valid pixels start ``max_seeds`` seeds at a time and
        take means over ``max_points`` pixels, both chosen by hashed pixel ids; after each round
        of seeds, pixels farther than 2 · ``bandwidth`` from every centre that were no seed yet
        seed the next (at most ``max_rounds``), so a small object is not lost for want of a seed.
    generator: seeds those choices; mask, pixel_ids: as for ``kwikcluster``.
    Returns (N,) or (B, N) int64 labels 0..k−1 per image (−1 outside ``mask``).
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    if min(max_seeds, max_points, max_iterations, max_rounds) < 1:
        raise ValueError("max_seeds, max_points, max_iterations and max_rounds must be >= 1")
    rows, mask, unbatched = as_batch(rows, mask)
    rows = rows.float()
    seed = draw_seed(generator)
    point_index, point_valid = _chosen(mask, max_points, seed, 0, pixel_ids)
    points = _gather(rows, point_index)
    all_centres, all_intensity, all_kept = [], [], []
    uncovered, nearest_distance = mask, torch.full(mask.shape, float("inf"), device=rows.device)
    for round_number in range(max_rounds):
        seed_index, seed_valid = _chosen(uncovered, max_seeds, seed, round_number + 1, pixel_ids)
        centres, intensity = _shift(
            _gather(rows, seed_index), seed_valid.clone(), points, point_valid, bandwidth, max_iterations
        )
        kept = seed_valid & (intensity > 0)
        all_centres.append(centres)
        all_intensity.append(intensity)
        all_kept.append(kept)
        _, distance = _nearest(rows, centres, kept)
        nearest_distance = torch.minimum(nearest_distance, distance)
        tried = torch.zeros_like(mask).scatter_(1, seed_index, seed_valid)
        uncovered = uncovered & ~tried & (nearest_distance > (_COVERED * bandwidth) ** 2)
        if not bool(uncovered.any()):
            break
    centres, intensity, kept = torch.cat(all_centres, 1), torch.cat(all_intensity, 1), torch.cat(all_kept, 1)

    order = _lexicographic_order(torch.where(kept, intensity, -1), centres)
    centres, kept = _gather(centres, order), kept.gather(1, order)
    near = _squared_distances(centres, centres) <= bandwidth**2
    unique = kept.clone()
    for index in range(unique.shape[1]):
        keep = unique[:, index].clone()
        unique &= ~(near[:, index] & keep.unsqueeze(1))
        unique[:, index] = keep
    # The remaining centres, compacted in their order: (B, K, d) for the largest K of the batch.
    count = int(unique.sum(dim=1).max()) if unique.numel() else 0
    slots = torch.sort((~unique).to(torch.int8), dim=1, stable=True).indices[:, : max(count, 1)]
    nearest, _ = _nearest(rows, _gather(centres, slots), unique.gather(1, slots))
    labels = nearest.masked_fill(~mask, -1)
    return labels.squeeze(0) if unbatched else labels
