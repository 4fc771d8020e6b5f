"""PASCAL VOC 2012 instance segmentation, read from ``VOCdevkit/VOC2012`` as distributed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

from dsc.contracts import InvalidInputError, MissingFileError
from dsc.data.files import Item, check_sizes, read_image, read_lines, read_palette_png, require_files
from dsc.data.verify import ExpectedFile

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
VOC_DOWNLOAD = (
    "download VOCtrainval_11-May-2012.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/), "
    "extract it into $DSC_DATA (or pass paths.voc_root=<dir>/VOCdevkit/VOC2012)"
)


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
            raise MissingFileError(f"VOC root {self.root} does not exist: {VOC_DOWNLOAD}")
        for folder in self.folders:
            if not (self.root / folder).is_dir():
                raise MissingFileError(f"VOC root {self.root} has no {folder}/: {VOC_DOWNLOAD}")
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        self.listed_in = split_file
        if not split_file.is_file():
            raise MissingFileError(
                f"VOC split file {split_file} does not exist (splits: train, val): {VOC_DOWNLOAD}"
            )
        self.ids = read_lines(split_file)
        if not self.ids:
            raise InvalidInputError(f"VOC split file {split_file} lists no images")
        require_files(
            {image_id: list(self.files(image_id).values()) for image_id in self.ids},
            split_file,
            VOC_DOWNLOAD,
            root=self.root,
        )
        self.transform = transform

    def files(self, image_id: str) -> dict[str, Path]:
        """The image and label files of one image, by item key."""
        return {
            "image": self.root / "JPEGImages" / f"{image_id}.jpg",
            "instances": self.root / "SegmentationObject" / f"{image_id}.png",
            "classes": self.root / "SegmentationClass" / f"{image_id}.png",
        }

    def expected_files(self) -> dict[str, list[ExpectedFile]]:
        """Each image id's files, for ``dsc.data.verify``: label maps are palette PNGs."""
        return {
            image_id: [
                ExpectedFile(path, modes=None if key == "image" else ("P",))
                for key, path in self.files(image_id).items()
            ]
            for image_id in self.ids
        }

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Item:
        item = self.read_item(index)
        return self.transform(item) if self.transform else item

    def read_item(self, index: int) -> Item:
        """Item ``index`` before the transform."""
        files = self.files(self.ids[index])
        redo = f"the file is missing or corrupt; {VOC_DOWNLOAD}"
        item = {
            "image": read_image(files["image"], redo),
            "instances": read_palette_png(files["instances"], redo),
            "classes": read_palette_png(files["classes"], redo),
        }
        check_sizes(item, files)
        return item
