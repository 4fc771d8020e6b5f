"""Grouping pixels by several integer keys at once: the basis of contingency tables and per-instance sums."""

from __future__ import annotations

import torch
from torch import Tensor

_INT64_LIMIT = 2**62


def combine_keys(*keys: Tensor) -> Tensor:
    """One int64 per item, equal for two items exactly when all their keys are equal, ordered like
    the key tuples (the first key most significant). keys: 1-D integer tensors of one length.

    A mixed-radix number over the keys' ranges, so a 1-D ``torch.unique`` groups the items (much
    faster than ``unique(dim=…)``); ranges too wide for int64 fall back to that slower path.
    """
    lows = [key.min() if key.numel() else key.new_zeros(()) for key in keys]
    spans = [int(key.max() - low) + 1 if key.numel() else 1 for key, low in zip(keys, lows, strict=True)]
    if torch.tensor(spans, dtype=torch.float64).prod() >= _INT64_LIMIT:
        return torch.unique(torch.stack(keys), dim=1, return_inverse=True)[1]
    combined = torch.zeros_like(keys[0], dtype=torch.int64)
    for key, low, span in zip(keys, lows, spans, strict=True):
        combined = combined * span + (key.long() - low)
    return combined


def group(image: Tensor, *keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Group items by (image, *keys), groups ordered by image first.

    Returns group_of_item (n,) int64, image_of_group (G,) and group sizes (G,).
    """
    _, group_of_item, sizes = torch.unique(
        combine_keys(image, *keys), return_inverse=True, return_counts=True
    )
    image_of_group = torch.zeros_like(sizes).scatter_(0, group_of_item, image.long())
    return group_of_item, image_of_group, sizes
