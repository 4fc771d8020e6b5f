"""KwikCluster followed by local improvement: the paper's "locally optimal projection" (Sec. 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.losses import squared_residual_norms
from dsc.rounding.hashing import draw_seed
from dsc.rounding.kwikcluster import _kwikcluster, as_batch
from dsc.rounding.postprocess import cluster_sums, num_clusters, relabel_consecutive

_MAX_GAIN_ELEMENTS = 2**26  # per chunk of pixels: 256 MiB of float32 gains


def refine(rows: Tensor, labels: Tensor, mask: Tensor, max_iterations: int = 10) -> Tensor:
    """Move every pixel to the cluster it agrees with most, until nothing moves or the cap.

    Pixel i in cluster c costs 2 Σ_{j∈c, j≠i} (1 − 2 v_i·v_j) of ‖V̂V̂ᵀ − A_r‖²_F, so its best
    cluster maximises 2 v_i·s_c − n_c (s_c, n_c: the cluster's sum and size without i). All pixels
    move at once, which need not lower the objective every time, so each image keeps the best
    labels seen. rows (B, N, d), labels and mask (B, N) → (B, N) labels 0..k−1 (−1 outside mask).
    """
    if labels.shape[1] == 0:
        return labels
    slots = num_clusters(labels)
    best_labels, best_objective = labels, squared_residual_norms(rows, labels, mask)
    squared_lengths = rows.square().sum(dim=-1)
    batch, num_pixels, _ = rows.shape
    chunk = max(1, _MAX_GAIN_ELEMENTS // max(batch * slots, 1))
    for _ in range(max_iterations):
        sums, sizes = cluster_sums(rows, labels, slots)
        # Only an image's own clusters: the batch's spare slots would be new, empty clusters that
        # a pixel could move into in a batch but not alone.
        own_slots = torch.arange(slots, device=labels.device) <= labels.amax(dim=1, keepdim=True)
        best = []
        for start in range(0, num_pixels, chunk):  # bounds the (B, chunk, K) gains in memory
            part = slice(start, start + chunk)
            gain = 2.0 * rows[:, part] @ sums.transpose(1, 2) - sizes.unsqueeze(1)
            # A pixel's own cluster without itself: take off its own contribution 2‖v_i‖² − 1.
            own = labels[:, part].clamp(min=0).unsqueeze(-1)
            gain.scatter_add_(2, own, -(2.0 * squared_lengths[:, part] - 1.0).unsqueeze(-1))
            gain.masked_fill_(~own_slots.unsqueeze(1), float("-inf"))
            best.append(gain.argmax(dim=-1))
        moved = torch.where(mask, torch.cat(best, dim=1), -1)
        if torch.equal(moved, labels):
            break
        labels = moved
        objective = squared_residual_norms(rows, labels, mask)
        better = objective < best_objective
        best_labels = torch.where(better.unsqueeze(1), labels, best_labels)
        best_objective = torch.minimum(objective, best_objective)
    return relabel_consecutive(best_labels)


def kwikcluster_refine(
    rows: Tensor,
    threshold: float = 0.5,
    max_iterations: int = 10,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """KwikCluster, then ``refine`` to a fixed point or ``max_iterations`` sweeps.

    Shapes and arguments as ``dsc.rounding.kwikcluster``; never worse than KwikCluster alone by
    the objective ‖V̂V̂ᵀ − A_r‖²_F.
    """
    rows, mask, unbatched = as_batch(rows, mask)
    labels = _kwikcluster(rows, mask, threshold, draw_seed(generator), None, pixel_ids)
    labels = refine(rows, labels, mask, max_iterations)
    return labels.squeeze(0) if unbatched else labels
