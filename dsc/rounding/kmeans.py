"""Spherical k-means in inner-product space, with k read off the spectrum of FᵀF."""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.rounding.hashing import draw_seed, hash_keys
from dsc.rounding.kwikcluster import as_batch
from dsc.rounding.postprocess import cluster_sums, relabel_consecutive


def estimate_num_clusters(rows: Tensor, mask: Tensor, min_fraction: float = 0.005) -> Tensor:
    """Number of clusters per image from the eigenvalues of FᵀF (B, d, d).

    When F Fᵀ ≈ A, the eigenvalues of FᵀF (those of F Fᵀ) are the cluster sizes n_c — the square
    roots of the eigenvalues n_c² of the paper's Laplacian L = AD (Theorem 2.1). Count those of at
    least ``min_fraction`` of the image's pixels (and at least one pixel). Returns (B,) int64 ≥ 1.
    """
    features = torch.where(mask.unsqueeze(-1), rows, 0.0).double()
    eigenvalues = torch.linalg.eigvalsh(features.transpose(1, 2) @ features)  # (B, d)
    threshold = (min_fraction * mask.sum(dim=1)).clamp(min=1.0).unsqueeze(1)
    return (eigenvalues >= threshold).sum(dim=1).clamp(min=1)


def kmeans(
    rows: Tensor,
    num_clusters: int | None = None,
    min_fraction: float = 0.005,
    max_iterations: int = 20,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """Spherical k-means: assign each row to the centroid of largest inner product, centroids the
    normalised cluster means. k is ``num_clusters`` or, if None, ``estimate_num_clusters`` (at most
    d). Centroids start at a random pixel (hashed from ``generator``) and then, one at a time, the
    pixel least similar to all chosen so far.

    rows: (N, d) or (B, N, d); mask: pixels to cluster; pixel_ids: as for ``kwikcluster``.
    Returns (N,) or (B, N) labels 0..k−1.
    """
    rows, mask, unbatched = as_batch(rows, mask)
    batch, num_pixels, _ = rows.shape
    if num_pixels == 0:
        labels = torch.full((batch, 0), -1, dtype=torch.int64, device=rows.device)
        return labels.squeeze(0) if unbatched else labels
    if num_clusters is not None:
        clusters_per_image = torch.full((batch,), num_clusters, dtype=torch.int64, device=rows.device)
    else:
        clusters_per_image = estimate_num_clusters(rows, mask, min_fraction)
    slots = int(clusters_per_image.max())
    slot_used = torch.arange(slots, device=rows.device).unsqueeze(0) < clusters_per_image.unsqueeze(1)

    # Farthest-point initialisation.
    pixels = num_pixels if pixel_ids is None else pixel_ids
    priority = torch.where(mask, hash_keys(draw_seed(generator), 0, pixels, rows.device), 2**33)
    chosen = [priority.argmin(dim=1)]
    closest = torch.full((batch, num_pixels), float("-inf"), device=rows.device, dtype=rows.dtype)
    for _ in range(1, slots):
        last = rows.gather(1, chosen[-1].view(batch, 1, 1).expand(-1, 1, rows.shape[2]))
        closest = torch.maximum(closest, (rows @ last.transpose(1, 2)).squeeze(2))
        chosen.append(torch.where(mask, closest, float("inf")).argmin(dim=1))
    centroids = rows.gather(1, torch.stack(chosen, dim=1).unsqueeze(-1).expand(-1, -1, rows.shape[2]))

    labels = torch.full((batch, num_pixels), -1, dtype=torch.int64, device=rows.device)
    for _ in range(max_iterations):
        scores = (rows @ centroids.transpose(1, 2)).masked_fill(~slot_used.unsqueeze(1), float("-inf"))
        assigned = torch.where(mask, scores.argmax(dim=2), -1)
        if torch.equal(assigned, labels):
            break
        labels = assigned
        sums, sizes = cluster_sums(rows, labels, slots)
        centroids = torch.where(
            (sizes > 0).unsqueeze(-1), torch.nn.functional.normalize(sums, dim=-1), centroids
        )
    labels = relabel_consecutive(labels)
    return labels.squeeze(0) if unbatched else labels
