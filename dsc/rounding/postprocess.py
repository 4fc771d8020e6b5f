"""Label clean-up shared by the rounding schemes: consecutive ids, cluster sums, small clusters."""

from __future__ import annotations

import torch
from torch import Tensor


def cluster_sums(rows: Tensor, labels: Tensor, num_clusters: int) -> tuple[Tensor, Tensor]:
    """Sum of rows and size of every cluster: (B, K, d) and (B, K); labels −1 count nowhere."""
    batch, _, dim = rows.shape
    kept = labels >= 0
    slot = torch.where(kept, labels, 0)
    weights = kept.to(rows.dtype)
    sums = rows.new_zeros(batch, num_clusters, dim).scatter_add_(
        1, slot.unsqueeze(-1).expand(-1, -1, dim), rows * weights.unsqueeze(-1)
    )
    sizes = rows.new_zeros(batch, num_clusters).scatter_add_(1, slot, weights)
    return sums, sizes


def num_clusters(labels: Tensor) -> int:
    """Number of label slots needed for (B, N) labels (1 + the largest label, at least 1)."""
    return max(int(labels.max()) + 1, 1) if labels.numel() else 1


def relabel_consecutive(labels: Tensor) -> Tensor:
    """Renumber each image's labels 0..k−1 keeping their order; −1 stays −1. labels: (B, N)."""
    slots = num_clusters(labels)
    kept = labels >= 0
    # Count (not overwrite): pixels left out share slot 0 with weight 0.
    counts = torch.zeros(labels.shape[0], slots, dtype=torch.int64, device=labels.device)
    counts.scatter_add_(1, torch.where(kept, labels, 0), kept.to(torch.int64))
    new_id = (counts > 0).cumsum(dim=1) - 1
    return torch.where(kept, new_id.gather(1, torch.where(kept, labels, 0)), -1)


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
