"""PASCAL VOC 2012 instance segmentation, read from ``VOCdevkit/VOC2012`` as distributed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    class_names = VOC_CLASSES

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
        require_files(
            {image_id: list(self.files(image_id).values()) for image_id in self.ids}, split_file, VOC_DOWNLOAD
        )
        self.transform = transform

    def files(self, image_id: str) -> dict[str, Path]:
        """The image and label files of one image, by item key."""
        return {
            "image": self.root / "JPEGImages" / f"{image_id}.jpg",
            "instances": self.root / "SegmentationObject" / f"{image_id}.png",
            "classes": self.root / "SegmentationClass" / f"{image_id}.png",
        }

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Item:
        files = self.files(self.ids[index])
        redo = f"the file is missing or corrupt; {VOC_DOWNLOAD}"
        item = {
            "image": read_image(files["image"], redo),
            "instances": read_palette_png(files["instances"], redo),
            "classes": read_palette_png(files["classes"], redo),
        }
        check_sizes(item, files)
        return self.transform(item) if self.transform else item


def check_sizes(item: Item, files: Mapping[str, Path]) -> None:
    """Raise ValueError naming the files when an item's image and label maps differ in size.

    files: the files the item was read from, by item key (``image``, ``instances``, ``classes``).
    """
    sizes = {key: tuple(item[key].shape[-2:]) for key in ("image", "instances", "classes")}
    if len(set(sizes.values())) != 1:
        described = ", ".join(f"{files.get(key, key)} is {h}×{w} (H×W)" for key, (h, w) in sizes.items())
        raise ValueError(
            f"image and label maps differ in size: {described}; the files do not belong together"
        )


def require_files(files_by_id: Mapping[str, Sequence[Path]], listed_in: Path, what_to_do: str) -> None:
    """Raise FileNotFoundError listing the image ids of ``listed_in`` whose files are missing."""
    missing = {image_id: [p for p in paths if not p.is_file()] for image_id, paths in files_by_id.items()}
    missing = {image_id: paths for image_id, paths in missing.items() if paths}
    if missing:
        shown = "; ".join(
            f"{image_id} ({', '.join(map(str, paths))})" for image_id, paths in list(missing.items())[:5]
        )
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{len(missing)} of the {len(files_by_id)} images listed in {listed_in} have missing files: "
            f"{shown}{more}. Complete the data ({what_to_do}) or remove these ids from the list"
        )
