"""Agglomerative clustering (scikit-learn's ``AgglomerativeClustering``) as a rounding: a well-kept
library's clustering beside dsc's own schemes, for the arena's comparison of roundings.

Per image, ``max_points`` valid pixels (chosen by hashed pixel ids, so an image's sample does not
depend on its batch) are clustered with average linkage under cosine distance, merging while
clusters are closer than ``distance_threshold`` (0.5: a mean cosine similarity above ½, KwikCluster's
threshold). Every valid pixel then takes the cluster whose normalised mean is nearest in inner
product. Average linkage needs all pairwise distances of the sample: O(max_points²) memory.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dsc.rounding.hashing import draw_seed, hash_uniform
from dsc.rounding.kwikcluster import as_batch
from dsc.rounding.postprocess import relabel_consecutive

_STREAM = 7  # the hash stream of the sampled pixels (any constant; other schemes use others)


def agglomerative(
    rows: Tensor,
    distance_threshold: float = 0.5,
    max_points: int = 1024,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """rows: (N, d) or (B, N, d) embeddings (unit for cosine distances to mean what KwikCluster's
    inner products mean); mask: (N,) / (B, N) valid pixels. Returns (N,) / (B, N) int64 labels,
    0..k−1 per image, −1 outside the mask."""
    try:
        from sklearn.cluster import AgglomerativeClustering
    except ImportError as error:
        raise ImportError(
            "rounding=agglomerative needs scikit-learn: pip install 'dsc[arena]' (or scikit-learn)"
        ) from error
    if not 0 < distance_threshold <= 2:
        raise ValueError(f"distance_threshold is a cosine distance in (0, 2], got {distance_threshold}")
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    rows, mask, unbatched = as_batch(rows, mask)
    seed = draw_seed(generator)
    ids = pixel_ids if pixel_ids is not None else torch.arange(rows.shape[1], device=rows.device)
    priority = hash_uniform(seed, _STREAM, ids, rows.device).expand(rows.shape[:2])
    labels = torch.full(rows.shape[:2], -1, dtype=torch.int64, device=rows.device)
    for image in range(rows.shape[0]):
        valid = torch.nonzero(mask[image]).squeeze(1)
        if len(valid) == 0:
            continue
        if len(valid) <= 1:
            labels[image, valid] = 0
            continue
        sample = valid[torch.argsort(priority[image, valid])[:max_points]]
        points = rows[image, sample].double()
        clusters = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=distance_threshold
        ).fit_predict(points.cpu().numpy())
        clusters = torch.from_numpy(clusters.astype(np.int64)).to(rows.device)
        means = torch.zeros(int(clusters.max()) + 1, rows.shape[2], dtype=torch.float64, device=rows.device)
        means.index_add_(0, clusters, points)
        means = torch.nn.functional.normalize(means, dim=1)
        labels[image, valid] = (rows[image, valid].double() @ means.T).argmax(dim=1)
    labels = relabel_consecutive(labels)
    return labels.squeeze(0) if unbatched else labels
