"""KwikCluster followed by local improvement: the paper's "locally optimal projection" (Sec. 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.losses.closed_form import squared_frobenius
from dsc.rounding.hashing import draw_seed
from dsc.rounding.kwikcluster import as_batch, kwikcluster_labels
from dsc.rounding.postprocess import cluster_sums, num_clusters, relabel_consecutive

_GAIN_CHUNK_ELEMENTS = 2**18  # (B, pixels, K) gains per chunk: 1 MiB of float32, in a core's cache


def _best_clusters(rows: Tensor, labels: Tensor, sums: Tensor, sizes: Tensor, own_term: Tensor) -> Tensor:
    """Each pixel's best cluster: argmax over the image's clusters c of 2 v_i·s_c − n_c, its own
    cluster counted without itself (``own_term`` = 2‖v_i‖² − 1 off). (B, N) → (B, N) slots."""
    batch, num_pixels, _ = rows.shape
    slots = sums.shape[1]
    # Only an image's own clusters: the batch's spare slots would be new, empty clusters that a
    # pixel could move into in a batch but not alone.
    own_slots = torch.arange(slots, device=labels.device) <= labels.amax(dim=1, keepdim=True)
    bias = torch.where(own_slots, -sizes, float("-inf")).unsqueeze(1)  # (B, 1, K)
    targets = 2.0 * sums.transpose(1, 2)  # (B, d, K)
    chunk = max(64, _GAIN_CHUNK_ELEMENTS // max(batch * slots, 1))
    best = torch.empty_like(labels)
    for start in range(0, num_pixels, chunk):
        part = slice(start, start + chunk)
        gain = torch.baddbmm(bias, rows[:, part], targets)  # (B, m, K), in cache
        gain.scatter_add_(2, labels[:, part].clamp(min=0).unsqueeze(-1), -own_term[:, part].unsqueeze(-1))
        best[:, part] = gain.argmax(dim=-1)
    return best


def refine(rows: Tensor, labels: Tensor, mask: Tensor, max_iterations: int = 10) -> Tensor:
    """Move every pixel to the cluster it agrees with most, until nothing moves or the cap.

    Pixel i in cluster c costs 2 Σ_{j∈c, j≠i} (1 − 2 v_i·v_j) of ‖V̂V̂ᵀ − A_r‖²_F, so its best
    cluster maximises 2 v_i·s_c − n_c (s_c, n_c: the cluster's sum and size without i). All pixels
    move at once, which need not lower the objective every time, so each image keeps the best
    labels seen. rows (B, N, d), labels and mask (B, N) → (B, N) labels 0..k−1 (−1 outside mask).

    Each sweep is one pass over the pixels: the cluster sums, then the gains in chunks that stay
    in the cache; the objective ‖G‖²_F − 2 Σ‖s_c‖² + Σ n_c² of the labels comes from the same sums
    (G = Σ v_i v_iᵀ over the valid pixels does not change).
    """
    if labels.shape[1] == 0:
        return labels
    slots = num_clusters(labels)
    # The objective is a difference of sums of up to N² terms: float64, or rounding decides the best.
    rows64 = torch.where(mask.unsqueeze(-1), rows, 0.0).double()
    gram = rows64.transpose(1, 2) @ rows64
    own_term = 2.0 * rows.square().sum(dim=-1) - 1.0
    best_labels, best_objective = (
        labels,
        torch.full((rows.shape[0],), float("inf"), dtype=torch.float64, device=rows.device),
    )
    for sweep in range(max_iterations + 1):
        sums, sizes = cluster_sums(rows64, labels, slots)
        objective = squared_frobenius(gram, sums, sizes)
        better = objective < best_objective
        best_labels = torch.where(better.unsqueeze(1), labels, best_labels)
        best_objective = torch.minimum(objective, best_objective)
        if sweep == max_iterations:
            break
        best = _best_clusters(rows, labels, sums.to(rows.dtype), sizes.to(rows.dtype), own_term)
        moved = torch.where(mask, best, -1)
        if torch.equal(moved, labels):
            break
        labels = moved
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
    labels = kwikcluster_labels(rows, mask, threshold, draw_seed(generator), None, pixel_ids)
    labels = refine(rows, labels, mask, max_iterations)
    return labels.squeeze(0) if unbatched else labels
