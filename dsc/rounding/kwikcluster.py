"""KwikCluster (Ailon, Charikar & Newman, 2008): the paper's rounding of embeddings to a partition.

Visit pixels in a random order; each pixel not yet clustered becomes a pivot and takes every
unclustered pixel whose inner product with it exceeds the threshold. Section 2.3 and Theorem 2.2
of the paper bound the loss of the rounded partition by 6× the network's loss.
"""

from __future__ import annotations

import torch
from torch import Tensor


def kwikcluster(
    embeddings: Tensor,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Cluster rows by KwikCluster in inner-product space.

    embeddings: (N, d) rows, normally of unit length (similarity v_i·v_j ∈ [−1, 1]).
    threshold: a pixel joins a pivot's cluster when v_i·v_p > threshold (the paper: ½).
    generator: a CPU ``torch.Generator`` for the visiting order. The order is always drawn on the
        CPU, so one seed gives the same labels on CPU and GPU, except where a similarity lies
        within float rounding of the threshold.

    Returns (N,) int64 labels 0..k−1, numbered in the order the pivots were visited, on the
    embeddings' device. Each pivot step is one vectorised (N, d)·(d,) product.
    """
    if embeddings.dim() != 2:
        raise ValueError(f"expected (N, d) embeddings, got shape {tuple(embeddings.shape)}")
    num_rows = embeddings.shape[0]
    device = embeddings.device
    labels = torch.full((num_rows,), -1, dtype=torch.int64, device=device)
    if num_rows == 0:
        return labels
    if not torch.isfinite(embeddings).all():
        raise ValueError("kwikcluster got non-finite embeddings (NaN or inf)")

    visiting_order = torch.randperm(num_rows, generator=generator).to(device)
    cluster = 0
    position = 0  # visiting_order[:position] are all clustered
    while position < num_rows:
        # Skip to the first unclustered pixel in visiting order; one host sync per pivot.
        unclustered_in_order = labels[visiting_order[position:]] < 0
        if not bool(unclustered_in_order.any()):
            break
        position += int(unclustered_in_order.to(torch.uint8).argmax())
        pivot = visiting_order[position]
        joins = (embeddings @ embeddings[pivot] > threshold) & (labels < 0)
        joins[pivot] = True
        labels[joins] = cluster
        cluster += 1
        position += 1
    return labels
