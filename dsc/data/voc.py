"""PASCAL VOC 2012 instance segmentation, read from ``VOCdevkit/VOC2012`` as distributed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
VOC_DOWNLOAD = (
    "download VOCtrainval_11-May-2012.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/), "
    "extract it into $DSC_DATA (or pass paths.voc_root=<dir>/VOCdevkit/VOC2012)"
)
Item = dict[str, Tensor]


def read_image(path: Path, what_to_do: str, exif_orientation: bool = False) -> Tensor:
    """(3, H, W) float RGB in [0, 1]; a missing or unreadable file raises naming it.

    8-bit images of any mode (grey, palette, RGB, CMYK) are converted to RGB; 16-bit and 32-bit
    grey images keep their precision (scaled by 65535, values above it saturate); transparent
    pixels (RGBA, LA, palette transparency) are composited over black. ``exif_orientation``
    turns the image upright as its EXIF Orientation tag says (photos; data sets are annotated
    on the stored pixels, so they read with it off).
    """
    try:
        with Image.open(path) as image:
            if exif_orientation:
                image = ImageOps.exif_transpose(image)
            array = _rgb_array(image)
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read image {path} ({error}): {what_to_do}") from error
    return torch.from_numpy(array).permute(2, 0, 1)


def _rgb_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] of a PIL image of any mode."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        grey = np.asarray(image, dtype=np.float32)
        if image.mode != "F":
            grey = grey / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return np.ascontiguousarray(rgba[..., :3] * rgba[..., 3:])
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def read_palette_png(path: Path, what_to_do: str) -> Tensor:
    """(H, W) int64 palette indices of a VOC label PNG (ids 0…, 255 void)."""
    try:
        with Image.open(path) as image:
            if image.mode != "P":
                raise ValueError(f"mode {image.mode}, expected a palette ('P') PNG")
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read label map {path} ({error}): {what_to_do}") from error
    return torch.from_numpy(array.astype(np.int64))


class VOCInstances(Dataset):
    """VOC 2012 images with instance and class maps.

    root: the ``VOC2012`` folder with ``JPEGImages``, ``SegmentationObject``, ``SegmentationClass``
        and ``ImageSets/Segmentation/<split>.txt``.
    Items: ``image`` (3, H, W) float in [0, 1], ``instances`` (H, W) int64 (0 background, 1…k
    objects, 255 void) and ``classes`` (H, W) int64 (VOC's 21 classes, 255 void), then
    ``transform`` (e.g. ``RandomScaleCropFlip``) if given.
    """

    folders = ("JPEGImages", "SegmentationObject", "SegmentationClass")

    def __init__(
        self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"VOC root {self.root} does not exist: {VOC_DOWNLOAD}")
        for folder in self.folders:
            if not (self.root / folder).is_dir():
                raise FileNotFoundError(f"VOC root {self.root} has no {folder}/: {VOC_DOWNLOAD}")
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(
                f"VOC split file {split_file} does not exist (splits: train, val): {VOC_DOWNLOAD}"
            )
        self.ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise ValueError(f"VOC split file {split_file} lists no images")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Item:
        image_id = self.ids[index]
        redo = f"the file is missing or corrupt; {VOC_DOWNLOAD}"
        item = {
            "image": read_image(self.root / "JPEGImages" / f"{image_id}.jpg", redo),
            "instances": read_palette_png(self.root / "SegmentationObject" / f"{image_id}.png", redo),
            "classes": read_palette_png(self.root / "SegmentationClass" / f"{image_id}.png", redo),
        }
        check_sizes(item, image_id)
        return self.transform(item) if self.transform else item


def check_sizes(item: Item, image_id: str) -> None:
    sizes = {tuple(item["image"].shape[-2:]), tuple(item["instances"].shape), tuple(item["classes"].shape)}
    if len(sizes) != 1:
        raise ValueError(f"image {image_id}: image and label maps differ in size {sorted(sizes)}")
