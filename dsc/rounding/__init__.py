"""Rounding: turning pixel embeddings into a partition of the pixels (paper, Section 2.3).

Every scheme takes (N, d) or batched (B, N, d) rows and returns (N,) or (B, N) labels;
``round_embeddings`` / ``Rounding`` apply one to (B, d, H, W) embedding maps.
"""

from dsc.rounding.agglomerative import agglomerative
from dsc.rounding.best_of import kwikcluster_best
from dsc.rounding.connected_components import ConnectedComponents, connected_components, fill_void
from dsc.rounding.kmeans import estimate_num_clusters, kmeans
from dsc.rounding.kwikcluster import kwikcluster, kwikcluster_soft
from dsc.rounding.meanshift import meanshift
from dsc.rounding.partitioners import ClassArgmax, Rounding, round_embeddings
from dsc.rounding.postprocess import merge_small_clusters, relabel_consecutive
from dsc.rounding.refine import kwikcluster_refine, refine

__all__ = [
    "ClassArgmax",
    "ConnectedComponents",
    "Rounding",
    "agglomerative",
    "connected_components",
    "estimate_num_clusters",
    "fill_void",
    "kmeans",
    "kwikcluster",
    "kwikcluster_best",
    "kwikcluster_refine",
    "kwikcluster_soft",
    "meanshift",
    "merge_small_clusters",
    "refine",
    "relabel_consecutive",
    "round_embeddings",
]
