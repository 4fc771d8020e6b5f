"""COCO instance segmentation from ``instances_*.json`` through pycocotools (polygons and RLE).

Conventions, as for VOC: instance ids 1..k in painting order, 0 background, 255 void.
* Overlaps: instances are painted from the largest area to the smallest (ties: lower annotation
  id first), so where two overlap the smaller one, usually the one in front, keeps the pixel.
* Crowd regions (``iscrowd`` = 1) are void, over everything else.
* Categories map to contiguous classes 1..C in the order of their COCO ids (80 for COCO 2017).
* Instance ids stop at 254 (255 is void): in an image with more instances, the smallest ones,
  painted last, become void.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dsc.data.labels import VOID
from dsc.data.voc import Item, read_image

COCO_DOWNLOAD = (
    "download val2017.zip / train2017.zip and annotations_trainval2017.zip from "
    "https://cocodataset.org/#download, extract them into $DSC_DATA/coco (or pass paths.coco_root=<dir>)"
)
MAX_INSTANCE_ID = VOID - 1


class COCOInstances(Dataset):
    """COCO images with instance and class maps (see the module docstring for the rules).

    images_dir: the folder of the split's images; annotation_file: its ``instances_*.json``.
    ``class_names[c]`` is the name of class c (0 is background).
    """

    def __init__(
        self,
        images_dir: str | Path,
        annotation_file: str | Path,
        transform: Callable[[Item], Item] | None = None,
    ) -> None:
        from pycocotools.coco import COCO

        self.images_dir = Path(images_dir)
        annotation_file = Path(annotation_file)
        if not annotation_file.is_file():
            raise FileNotFoundError(f"COCO annotation file {annotation_file} does not exist: {COCO_DOWNLOAD}")
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"COCO image folder {self.images_dir} does not exist: {COCO_DOWNLOAD}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
                self.coco = COCO(str(annotation_file))
        except (ValueError, KeyError, TypeError) as error:  # JSON errors are ValueErrors
            raise ValueError(f"cannot read COCO annotations {annotation_file}: {error}") from error
        category_ids = sorted(self.coco.getCatIds())
        self.class_of_category = {category: index for index, category in enumerate(category_ids, start=1)}
        self.class_names = ["background"] + [self.coco.cats[c]["name"] for c in category_ids]
        self.image_ids = sorted(self.coco.getImgIds())
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_ids)

    def label_maps(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) int64 instance and class maps of one image."""
        info = self.coco.imgs[image_id]
        instances = np.zeros((info["height"], info["width"]), dtype=np.int64)
        classes = np.zeros_like(instances)
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
        objects = sorted(
            (a for a in annotations if not a.get("iscrowd")), key=lambda a: (-a["area"], a["id"])
        )
        for instance_id, annotation in enumerate(objects, start=1):
            mask = self.coco.annToMask(annotation).astype(bool)
            instances[mask] = instance_id if instance_id <= MAX_INSTANCE_ID else VOID
            classes[mask] = self.class_of_category[annotation["category_id"]]
        for annotation in annotations:
            if annotation.get("iscrowd"):
                crowd = self.coco.annToMask(annotation).astype(bool)
                instances[crowd] = VOID
                classes[crowd] = VOID
        classes[instances == VOID] = VOID
        # Ids of instances hidden completely by smaller ones are skipped: renumber 1..k.
        present = np.unique(instances[(instances > 0) & (instances != VOID)])
        renumber = np.zeros(MAX_INSTANCE_ID + 2, dtype=np.int64)
        renumber[present] = np.arange(1, len(present) + 1)
        renumber[VOID] = VOID
        return renumber[instances], classes

    def __getitem__(self, index: int) -> Item:
        image_id = self.image_ids[index]
        file_name = self.coco.imgs[image_id]["file_name"]
        image = read_image(self.images_dir / file_name, f"the file is missing or corrupt; {COCO_DOWNLOAD}")
        instances, classes = self.label_maps(image_id)
        if image.shape[-2:] != instances.shape:
            raise ValueError(
                f"{file_name}: image is {tuple(image.shape[-2:])} but annotated as {instances.shape}"
            )
        item = {
            "image": image,
            "instances": torch.from_numpy(instances),
            "classes": torch.from_numpy(classes),
        }
        return self.transform(item) if self.transform else item
