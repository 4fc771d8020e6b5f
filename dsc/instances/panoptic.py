"""Instances as panoptic maps, the input of torchmetrics' ``PanopticQuality``."""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.instances.instances import Instances
from dsc.labels import VOID


def panoptic_maps(instances: list[Instances], void: Tensor) -> Tensor:
    """Panoptic (B, H, W, 2) maps of (category, instance id) for torchmetrics' ``PanopticQuality``:
    background (0, 0) where no instance is, (class, k + 1) on instance k, (``VOID``, 0) on ``void``
    ((B, H, W) bool) pixels. Where instances overlap (a partition's never do), the later one wins."""
    batch, height, width = void.shape
    maps = torch.zeros(batch, height, width, 2, dtype=torch.int64, device=void.device)
    for image, image_instances in enumerate(instances):
        if len(image_instances):
            masks = image_instances.masks.to(void.device)
            numbers = torch.arange(1, len(masks) + 1, device=void.device).view(-1, 1, 1)
            owner = (masks * numbers).amax(dim=0)  # (H, W): k + 1 on instance k, 0 elsewhere
            classes = image_instances.classes.to(void.device)
            classes = torch.cat([classes.new_zeros(1), classes])
            maps[image, ..., 0] = classes[owner]
            maps[image, ..., 1] = owner
    maps[void] = torch.tensor([VOID, 0], device=void.device)
    return maps
