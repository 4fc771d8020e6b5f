"""Pairwise partition metrics (the paper's Table 1), as pure functions and a torchmetrics Metric;
mask AP and panoptic quality of instances (``InstanceScores``)."""

from dsc.metrics.instance_scores import InstanceScores
from dsc.metrics.pair_counts import (
    pair_counts,
    pair_counts_per_image,
    pairwise_scores,
    partition_loss,
    scores_from_pair_counts,
)
from dsc.metrics.pairwise import PairwiseScores

__all__ = [
    "InstanceScores",
    "PairwiseScores",
    "pair_counts",
    "pair_counts_per_image",
    "pairwise_scores",
    "partition_loss",
    "scores_from_pair_counts",
]
