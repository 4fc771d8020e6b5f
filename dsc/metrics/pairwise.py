"""``PairwiseScores``: a torchmetrics ``Metric`` holding pair counts, summed across batches and ranks."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from dsc.metrics.pair_counts import pair_counts, scores_from_pair_counts


class PairwiseScores(Metric):
    """Pairwise accuracy, precision, recall and F1 of predicted partitions against targets.

    ``update(preds, target)`` takes (B, H, W) segment-id maps; pixels whose target is
    ``ignore_index`` are left out. ``compute()`` returns ``accuracy``, ``precision``, ``recall``,
    ``f1`` over all pairs of distinct valid pixels within each image (summed over images) and the
    same prefixed ``fg_`` over pairs of pixels that are both foreground in the target (target ≠ 0),
    where instance separation shows. States are int64 pair counts reduced with ``sum`` (DDP-safe).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ignore_index: int = 255, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ignore_index = ignore_index
        self.add_state("counts", default=torch.zeros(2, 4, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.counts += pair_counts(preds, target, self.ignore_index)

    def compute(self) -> dict[str, Tensor]:
        return scores_from_pair_counts(self.counts)
