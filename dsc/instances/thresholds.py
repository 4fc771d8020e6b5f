"""Which predicted instances a command writes: a minimum score and a minimum size.

``predict`` keeps, by default, the instances a user would show (score ≥ 0.5, ≥ 16 pixels);
``evaluate`` writes every instance unless told otherwise, so that its COCO file holds what mask AP
scored. Each command logs how many instances the thresholds dropped and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dsc.contracts import InvalidInputError
from dsc.instances.instances import Instances


@dataclass(frozen=True)
class InstanceThresholds:
    """Keep an instance when its score is at least ``min_score`` (in [0, 1]) and its mask has at
    least ``min_size`` pixels; 0 and 0 keep every instance."""

    min_score: float = 0.0
    min_size: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise InvalidInputError(
                f"min_score={self.min_score}: a score threshold lies in [0, 1] (0: keep all)"
            )
        if self.min_size < 0:
            raise InvalidInputError(f"min_size={self.min_size}: a size in pixels is >= 0 (0: keep all)")

    @property
    def keeps_all(self) -> bool:
        return self.min_score == 0.0 and self.min_size == 0

    def below(self, instances: Instances) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) bool masks of the instances below ``min_score`` and of those under ``min_size``."""
        low_score = instances.scores < self.min_score
        small = instances.masks.flatten(1).sum(dim=1) < self.min_size
        return low_score, small

    def apply(self, instances: Instances) -> Instances:
        """The instances that pass both thresholds."""
        low_score, small = self.below(instances)
        return instances.select(~(low_score | small))


@dataclass
class DroppedInstances:
    """``thresholds`` applied image by image, with counts of the instances seen and of those each
    threshold dropped."""

    thresholds: InstanceThresholds
    seen: int = 0
    low_score: int = 0
    small: int = 0
    dropped: int = 0

    def apply(self, instances: Instances) -> Instances:
        """The instances that pass the thresholds; the others are counted."""
        low_score, small = self.thresholds.below(instances)
        self.seen += len(instances)
        self.low_score += int(low_score.sum())
        self.small += int(small.sum())
        self.dropped += int((low_score | small).sum())
        return instances.select(~(low_score | small))

    def summary(self) -> str:
        """One sentence for the log: how many instances were kept and why the others were not."""
        kept = self.seen - self.dropped
        keys = f"min_score={self.thresholds.min_score}, min_size={self.thresholds.min_size}"
        if self.dropped == 0:
            return f"kept all {self.seen} instances ({keys})"
        reasons = []
        if self.low_score:
            reasons.append(f"{self.low_score} scored below min_score={self.thresholds.min_score}")
        if self.small:
            reasons.append(f"{self.small} smaller than min_size={self.thresholds.min_size} pixels")
        return (
            f"kept {kept} of {self.seen} instances; dropped {self.dropped}: {' and '.join(reasons)} "
            "(min_score=0 min_size=0 keeps them all)"
        )
