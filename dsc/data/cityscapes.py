"""Cityscapes instance segmentation from ``gtFine/*_instanceIds.png`` and ``leftImg8bit`` images.

A pixel value v of an instanceIds map is a label id (v < 1000) or class·1000 + instance (v ≥ 1000).
As in the Cityscapes instance evaluation, only the eight classes that have instances and are not
ignored in evaluation count as objects: person, rider, car, truck, bus, train, motorcycle, bicycle.
* their pixels with an instance number (v ≥ 1000) are instances 1..k, classes 1..8;
* their pixels without one (crowd groups such as "cargroup") are void (255);
* classes ignored in evaluation (unlabeled, ego vehicle, …, caravan, trailer, license plate) are void;
* every other ("stuff") class is background (0).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dsc.contracts import MissingFileError
from dsc.data.files import Item, check_sizes, number_instances, read_image, require_files
from dsc.data.verify import ExpectedFile
from dsc.labels import VOID

CITYSCAPES_DOWNLOAD = (
    "log in at https://www.cityscapes-dataset.com/downloads/, download gtFine_trainvaltest.zip and "
    "leftImg8bit_trainvaltest.zip, extract both into $DSC_DATA/cityscapes "
    "(or pass paths.cityscapes_root=<dir>)"
)
# Cityscapes label ids of the evaluated instance classes, in order: they become classes 1..8.
INSTANCE_LABEL_IDS = (24, 25, 26, 27, 28, 31, 32, 33)
CLASS_NAMES = ("background", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# Label ids ignored in evaluation (cityscapesscripts' labels.py): void in dsc.
IGNORED_LABEL_IDS = (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, -1)
INSTANCE_ID_MODES = ("I;16", "I;16B", "I", "L", "P")  # PIL modes of grey integer PNGs


def instance_maps(
    instance_ids: np.ndarray, source: str = "an instanceIds map"
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) instanceIds values → int64 instance map (0, 1..k, 255) and class map (0..8, 255);
    ``source`` names the map in errors."""
    values = instance_ids.astype(np.int64)
    label = np.where(values >= 1000, values // 1000, values)
    klass = np.zeros_like(values)
    for index, label_id in enumerate(INSTANCE_LABEL_IDS, start=1):
        klass[label == label_id] = index
    void = np.isin(label, IGNORED_LABEL_IDS) | ((klass > 0) & (values < 1000))
    instances = number_instances(values, (klass > 0) & ~void, void, source)
    klass[void] = VOID
    return instances, klass


class CityscapesInstances(Dataset):
    """Cityscapes ``split`` (train, val) images with instance and class maps (see module docstring).

    root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
    """

    class_names = CLASS_NAMES

    def __init__(
        self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None
    ):
        self.root = Path(root)
        for folder in ("leftImg8bit", "gtFine"):
            if not (self.root / folder / split).is_dir():
                raise MissingFileError(
                    f"Cityscapes root {self.root} has no {folder}/{split}/: {CITYSCAPES_DOWNLOAD}"
                )
        self.label_files = sorted((self.root / "gtFine" / split).glob("*/*_gtFine_instanceIds.png"))
        if not self.label_files:
            raise MissingFileError(
                f"no *_gtFine_instanceIds.png under {self.root / 'gtFine' / split}: {CITYSCAPES_DOWNLOAD}"
            )
        self.split = split
        self.listed_in = self.root / "gtFine" / split
        require_files(
            {self._stem(f): [self._image_file(f)] for f in self.label_files},
            self.root / "gtFine" / split,
            CITYSCAPES_DOWNLOAD,
            root=self.root,
        )
        self.transform = transform

    @staticmethod
    def _stem(label_file: Path) -> str:
        return label_file.name.removesuffix("_gtFine_instanceIds.png")

    def _image_file(self, label_file: Path) -> Path:
        folder = self.root / "leftImg8bit" / self.split / label_file.parent.name
        return folder / f"{self._stem(label_file)}_leftImg8bit.png"

    def expected_files(self) -> dict[str, list[ExpectedFile]]:
        """Each image's files, for ``dsc.data.verify``: its instanceIds map is a grey integer PNG."""
        return {
            self._stem(label_file): [
                ExpectedFile(self._image_file(label_file)),
                ExpectedFile(label_file, modes=INSTANCE_ID_MODES),
            ]
            for label_file in self.label_files
        }

    def __len__(self) -> int:
        return len(self.label_files)

    def __getitem__(self, index: int) -> Item:
        item = self.read_item(index)
        return self.transform(item) if self.transform else item

    def read_item(self, index: int) -> Item:
        """Item ``index`` before the transform."""
        label_file = self.label_files[index]
        image_file = self._image_file(label_file)
        image = read_image(image_file, f"the file is missing or corrupt; {CITYSCAPES_DOWNLOAD}")
        try:
            with Image.open(label_file) as label_image:
                values = np.asarray(label_image)
        except OSError as error:
            raise OSError(f"cannot read {label_file} ({error}): {CITYSCAPES_DOWNLOAD}") from error
        instances, classes = instance_maps(values, str(label_file))
        item = {
            "image": image,
            "instances": torch.from_numpy(instances),
            "classes": torch.from_numpy(classes),
        }
        check_sizes(item, {"image": image_file, "instances": label_file, "classes": label_file})
        return item
