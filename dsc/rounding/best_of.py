"""Best of several KwikCluster runs, by the correlation-clustering objective of Theorem 2.2."""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.losses import squared_residual_norms
from dsc.rounding.hashing import draw_seed, mix32
from dsc.rounding.kwikcluster import as_batch, kwikcluster_labels


def kwikcluster_best(
    rows: Tensor,
    runs: int = 8,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """Run KwikCluster ``runs`` times with different orders and keep, per image, the labels that
    minimise ℓ(V̂V̂ᵀ, V_rV_rᵀ) = ‖V̂V̂ᵀ − A_r‖²_F, computed in O(N·d²) without N² pairs.

    Shapes and arguments as ``dsc.rounding.kwikcluster``; (N,) or (B, N) int64 labels.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    rows, mask, unbatched = as_batch(rows, mask)
    seed = draw_seed(generator)
    best_labels, best_objective = None, None
    for run in range(runs):
        run_seed = int(mix32(torch.tensor(seed + run)))
        labels = kwikcluster_labels(rows, mask, threshold, run_seed, None, pixel_ids)
        objective = squared_residual_norms(rows, labels, mask)
        if best_labels is None:
            best_labels, best_objective = labels, objective
        else:
            better = objective < best_objective
            best_labels = torch.where(better.unsqueeze(1), labels, best_labels)
            best_objective = torch.minimum(objective, best_objective)
    return best_labels.squeeze(0) if unbatched else best_labels
