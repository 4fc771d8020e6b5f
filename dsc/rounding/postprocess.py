"""Label clean-up shared by the rounding schemes: consecutive ids, cluster sums, small clusters."""

from __future__ import annotations

import torch
from torch import Tensor

_SUM_CHUNK_PIXELS = 4096  # pixels whose rows are added in their own precision, then widened


def cluster_sums(
    rows: Tensor, labels: Tensor, num_clusters: int, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """Sum of rows and size of every cluster: (B, K, d) and (B, K) in ``dtype`` (the rows' by
    default); labels −1 count nowhere. A wider ``dtype`` adds the rows in their own precision per
    run of ``_SUM_CHUNK_PIXELS`` pixels (one ``index_add`` for all runs) and the runs' sums in
    ``dtype``: float32 rows give float64 sums good to float32 rounding of a run's sum."""
    batch, num_pixels, dim = rows.shape
    dtype = dtype or rows.dtype
    runs = 1 if dtype == rows.dtype else -(-num_pixels // _SUM_CHUNK_PIXELS)
    # One slot per (image, run, cluster) and a last one per image and run for pixels counted nowhere.
    slot = torch.where(labels >= 0, labels, num_clusters)
    first_slot = torch.arange(batch, device=labels.device).unsqueeze(1) * runs
    if runs > 1:
        run_of = torch.arange(runs, device=labels.device).repeat_interleave(_SUM_CHUNK_PIXELS)
        first_slot = first_slot + run_of[:num_pixels]
    slot += (num_clusters + 1) * first_slot
    partial = torch.zeros(batch * runs * (num_clusters + 1), dim, dtype=rows.dtype, device=rows.device)
    partial.index_add_(0, slot.flatten(), rows.reshape(-1, dim))
    sums = partial.view(batch, runs, num_clusters + 1, dim).to(dtype).sum(dim=1)
    sizes = torch.bincount(slot.flatten(), minlength=partial.shape[0]).view(batch, runs, -1).sum(dim=1)
    return sums[:, :num_clusters], sizes[:, :num_clusters].to(dtype)


def num_clusters(labels: Tensor) -> int:
    """Number of label slots needed for (B, N) labels (1 + the largest label, at least 1)."""
    return max(int(labels.max()) + 1, 1) if labels.numel() else 1


def relabel_consecutive(labels: Tensor, sizes: Tensor | None = None) -> Tensor:
    """Renumber each image's labels 0..k−1 keeping their order; −1 stays −1. labels: (B, N);
    sizes (B, K), K > the largest label: the clusters' sizes where the caller has them (counted
    here otherwise)."""
    kept = labels >= 0
    slot = torch.where(kept, labels, 0)
    if sizes is None:
        # Count (not overwrite): pixels left out share slot 0 with weight 0.
        sizes = torch.zeros(labels.shape[0], num_clusters(labels), dtype=torch.int64, device=labels.device)
        sizes.scatter_add_(1, slot, kept.to(torch.int64))
    new_id = (sizes > 0).cumsum(dim=1) - 1
    return torch.where(kept, new_id.gather(1, slot), -1)


def merge_small_clusters(rows: Tensor, labels: Tensor, min_size: int) -> Tensor:
    """Merge every cluster of fewer than ``min_size`` pixels into the cluster of at least that size
    whose mean embedding agrees most with its own (cosine of the means); an image without such a
    cluster keeps its labels. rows (B, N, d), labels (B, N) → (B, N) labels 0..k−1."""
    if min_size <= 1:
        return labels
    slots = num_clusters(labels)
    sums, sizes = cluster_sums(rows, labels, slots)
    means = torch.nn.functional.normalize(sums, dim=-1)
    agreement = means @ means.transpose(1, 2)  # (B, K, K)
    large = sizes >= min_size
    agreement = agreement.masked_fill(~large.unsqueeze(1), float("-inf"))
    target = agreement.argmax(dim=2)  # (B, K)
    own = torch.arange(slots, device=labels.device).expand_as(target)
    small = (sizes > 0) & ~large & large.any(dim=1, keepdim=True)
    mapping = torch.where(small, target, own)
    merged = torch.where(labels >= 0, mapping.gather(1, labels.clamp(min=0)), -1)
    return relabel_consecutive(merged)
