"""Augmentation applied identically to an image and its label maps, and padding into batches."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dsc.contracts import InvalidInputError
from dsc.data.files import Item
from dsc.labels import VOID

LABEL_KEYS = ("instances", "classes")


def _pad(item: Item, height: int, width: int) -> Item:
    """Pad on the bottom and right to at least (height, width): image with 0, labels with void,
    ``image_area`` (if present) with False."""
    pad_h, pad_w = max(height - item["image"].shape[-2], 0), max(width - item["image"].shape[-1], 0)
    if pad_h == 0 and pad_w == 0:
        return item
    padded = {key: value for key, value in item.items()}
    padded["image"] = F.pad(item["image"], (0, pad_w, 0, pad_h), value=0.0)
    for key in LABEL_KEYS:
        padded[key] = F.pad(item[key], (0, pad_w, 0, pad_h), value=VOID)
    if "image_area" in item:
        padded["image_area"] = F.pad(item["image_area"], (0, pad_w, 0, pad_h), value=False)
    return padded


class RandomScaleCropFlip:
    """Random rescale (bilinear image, nearest labels), crop of ``crop_size`` (padding with void
    where the image is smaller) and horizontal flip, the same for image and label maps.
    Uses torch's global generator, which Lightning seeds per worker."""

    def __init__(
        self, crop_size: int = 320, scale_range: tuple[float, float] = (0.5, 2.0), flip: bool = True
    ):
        if crop_size < 1 or not 0 < scale_range[0] <= scale_range[1]:
            raise InvalidInputError(
                f"need crop_size >= 1 and 0 < min scale <= max scale, got {crop_size}, {scale_range}"
            )
        self.crop_size = crop_size
        self.scale_range = tuple(scale_range)
        self.flip = flip

    def __call__(self, item: Item) -> Item:
        low, high = self.scale_range
        scale = math.exp(torch.empty(()).uniform_(math.log(low), math.log(high)).item())
        height, width = item["image"].shape[-2:]
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        out = {key: value for key, value in item.items()}
        out["image"] = F.interpolate(item["image"][None], size=size, mode="bilinear", align_corners=False)[0]
        for key in LABEL_KEYS:
            out[key] = F.interpolate(item[key][None, None].float(), size=size, mode="nearest")[0, 0].long()
        out = _pad(out, self.crop_size, self.crop_size)
        top = int(torch.randint(0, out["image"].shape[-2] - self.crop_size + 1, ()))
        left = int(torch.randint(0, out["image"].shape[-1] - self.crop_size + 1, ()))
        flip = self.flip and bool(torch.rand(()) < 0.5)
        for key in ("image", *LABEL_KEYS):
            value = out[key][..., top : top + self.crop_size, left : left + self.crop_size]
            out[key] = value.flip(-1) if flip else value
        return out


def pad_collate(items: list[Item]) -> Item:
    """Batch items of different sizes: pad each to the largest height and width (void labels).
    The batch also holds ``image_area`` (B, H, W) bool, False on the padding, which rounding
    leaves out so that an image's partition does not depend on the batch it is in."""
    height = max(item["image"].shape[-2] for item in items)
    width = max(item["image"].shape[-1] for item in items)
    with_area = [
        {**item, "image_area": torch.ones(item["image"].shape[-2:], dtype=torch.bool)} for item in items
    ]
    padded = [_pad(item, height, width) for item in with_area]
    return {key: torch.stack([item[key] for item in padded]) for key in padded[0]}
