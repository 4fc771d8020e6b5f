"""``Instances``: one image's masks, each with a class and a confidence score, the form in which
mask AP and panoptic quality judge instance segmentation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

OBJECT = 1  # the class of class-agnostic instances


@dataclass(eq=False)
class Instances:
    """One image's instances: masks (K, H, W) bool, classes (K,) int64 ≥ 1, scores (K,) float32."""

    masks: Tensor
    classes: Tensor
    scores: Tensor

    def __len__(self) -> int:
        return len(self.classes)

    def select(self, keep: Tensor) -> Instances:
        """The instances where the (K,) bool ``keep`` is True, in their order."""
        return Instances(self.masks[keep], self.classes[keep], self.scores[keep])

    def class_agnostic(self) -> Instances:
        """The same masks and scores, every instance of class 1 ("object")."""
        return Instances(self.masks, torch.full_like(self.classes, OBJECT), self.scores)


def no_instances(height: int, width: int, device: torch.device) -> Instances:
    """No instances of an image of (height, width) pixels."""
    return Instances(
        torch.zeros(0, height, width, dtype=torch.bool, device=device),
        torch.zeros(0, dtype=torch.int64, device=device),
        torch.zeros(0, device=device),
    )
