"""COCO instance segmentation from ``instances_*.json`` through pycocotools (polygons and RLE).

Conventions, as for VOC: instance ids 1..k in painting order, 0 background, 255 void.
* Overlaps: instances are painted from the largest area to the smallest (ties: lower annotation
  id first), so where two overlap the smaller one, usually the one in front, keeps the pixel.
* Crowd regions (``iscrowd`` = 1) are void, over everything else.
* Categories map to contiguous classes 1..C in the order of their COCO ids (80 for COCO 2017).
* The annotation file is checked when the data set is built: a malformed record (an empty
  segmentation, a polygon of fewer than 3 points, an RLE of another size, an unknown image or
  category id, no area) fails then, naming the file and the annotation id.
* Instance ids stop at 254 (255 is void): in an image with more instances, the smallest ones,
  painted last, become void.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dsc.contracts import InvalidInputError, MissingFileError
from dsc.data.files import Item, first_lines, read_image, require_inside
from dsc.data.verify import ExpectedFile
from dsc.labels import VOID

COCO_DOWNLOAD = (
    "download val2017.zip / train2017.zip and annotations_trainval2017.zip from "
    "https://cocodataset.org/#download, extract them into $DSC_DATA/coco (or pass paths.coco_root=<dir>)"
)
MAX_INSTANCE_ID = VOID - 1


MAX_SIDE = 65536  # pixels of an image's side that an annotation file may give


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _polygon_problem(polygon: Any, image: dict[str, Any]) -> str | None:
    """Why ``polygon`` (x0, y0, x1, y1, …) is no polygon of ``image``: not finite numbers, fewer
    than 3 points, or a point further than one image size outside it (pycocotools would rasterise
    such a polygon into gigabytes)."""
    if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
        return "a polygon is not a list of finite numbers"
    if len(polygon) < 6 or len(polygon) % 2:
        return f"a polygon has {len(polygon)} values; it needs an even number, at least 6 (3 points)"
    width, height = image["width"], image["height"]
    xs, ys = polygon[0::2], polygon[1::2]
    if min(xs) < -width or max(xs) > 2 * width or min(ys) < -height or max(ys) > 2 * height:
        return (
            f"a polygon reaches ({max(xs, key=abs)}, {max(ys, key=abs)}), more than the image's size "
            f"outside its {width}×{height} pixels"
        )
    return None


def _segmentation_problem(segmentation: Any, image: dict[str, Any]) -> str | None:
    if isinstance(segmentation, list):
        if not segmentation:
            return "segmentation is empty"
        return next(filter(None, (_polygon_problem(p, image) for p in segmentation)), None)
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if counts is None or not isinstance(counts, (str, list)):
            return "RLE segmentation has no counts"
        if size != [image["height"], image["width"]]:
            expected = [image["height"], image["width"]]
            return f"RLE size {size} differs from the image's [height, width] {expected}"
        if isinstance(counts, list) and not all(_is_id(n) and n >= 0 for n in counts):
            return "RLE counts are not whole numbers ≥ 0"
        if isinstance(counts, list) and sum(counts) != image["height"] * image["width"]:
            return (
                f"RLE counts add up to {sum(counts)}, not height × width {image['height'] * image['width']}"
            )
        return None
    return f"segmentation is a {type(segmentation).__name__}, not polygons (a list) or RLE (a dict)"


def annotation_problems(data: Any) -> list[str]:
    """Every problem of a COCO instances file that would make reading it fail or mislead, each
    naming the record (image or annotation id); empty when the file is well formed."""
    if not isinstance(data, dict):
        return [f"the file holds a {type(data).__name__}, not a dict with images, annotations and categories"]
    problems = [
        f"no '{key}' list"
        for key in ("images", "annotations", "categories")
        if not isinstance(data.get(key), list)
    ]
    if problems:
        return problems
    images: dict[Any, dict[str, Any]] = {}
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not {"id", "file_name", "height", "width"} <= image.keys():
            problems.append(f"images[{index}]: needs id, file_name, height and width")
        elif not _is_id(image["id"]):
            problems.append(f"images[{index}]: id {image['id']!r} is not a whole number")
        elif not isinstance(image["file_name"], str) or not image["file_name"]:
            problems.append(f"image id {image['id']}: file_name {image['file_name']!r} is not a file name")
        elif not all(_is_id(image[k]) and 1 <= image[k] <= MAX_SIDE for k in ("height", "width")):
            sides = f"{image['height']!r} × {image['width']!r}"
            problems.append(f"image id {image['id']}: height × width {sides} is not 1–{MAX_SIDE} pixels each")
        else:
            images[image["id"]] = image
    categories = set()
    for index, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or not _is_id(category.get("id")):
            problems.append(f"categories[{index}]: needs a whole-number id")
        elif not isinstance(category.get("name", ""), str):
            problems.append(f"category id {category['id']}: its name is not a string")
        else:
            categories.add(category["id"])
    for index, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict):
            problems.append(f"annotations[{index}]: a {type(annotation).__name__}, not a dict")
            continue
        where = f"annotation id {annotation.get('id', f'? (annotations[{index}])')}"
        missing = [
            key for key in ("id", "image_id", "category_id", "segmentation", "area") if key not in annotation
        ]
        if missing:
            problems.append(f"{where}: no {', '.join(missing)}")
            continue
        wrong = [key for key in ("id", "image_id", "category_id") if not _is_id(annotation[key])]
        if wrong:
            problems.append(f"{where}: {', '.join(wrong)} not a whole number")
            continue
        if not _is_number(annotation["area"]) or annotation["area"] < 0:
            problems.append(f"{where}: area {annotation['area']!r} is not a finite number ≥ 0")
            continue
        if annotation.get("iscrowd", 0) not in (0, 1) or isinstance(annotation.get("iscrowd"), float):
            problems.append(f"{where}: iscrowd {annotation.get('iscrowd')!r} is not 0 or 1")
            continue
        if annotation["image_id"] not in images:
            problems.append(f"{where}: image_id {annotation['image_id']} is not among the images")
            continue
        if annotation["category_id"] not in categories:
            problems.append(f"{where}: category_id {annotation['category_id']} is not among the categories")
        problem = _segmentation_problem(annotation["segmentation"], images[annotation["image_id"]])
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


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
            raise MissingFileError(f"COCO annotation file {annotation_file} does not exist: {COCO_DOWNLOAD}")
        if not self.images_dir.is_dir():
            raise MissingFileError(f"COCO image folder {self.images_dir} does not exist: {COCO_DOWNLOAD}")
        try:
            data = json.loads(annotation_file.read_text())
        except (OSError, ValueError, RecursionError) as error:  # JSON errors are ValueErrors
            reason = "nested past Python's stack" if isinstance(error, RecursionError) else error
            raise InvalidInputError(f"cannot read COCO annotations {annotation_file}: {reason}") from None
        problems = annotation_problems(data)
        if problems:
            raise InvalidInputError(
                f"COCO annotations {annotation_file} are malformed ({len(problems)} problems):\n  "
                f"{first_lines(problems)}\n"
                "Fix or remove these entries (format: https://cocodataset.org/#format-data)"
            )
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            self.coco.createIndex()
        self.annotation_file = annotation_file
        self.listed_in = annotation_file
        category_ids = sorted(self.coco.getCatIds())
        self.class_of_category = {category: index for index, category in enumerate(category_ids, start=1)}
        self.category_of_class = [0, *category_ids]  # class c's COCO category id (c ≥ 1)
        self.categories = [self.coco.cats[c] for c in category_ids]  # COCO's records, in class order
        self.class_names = ["background"] + [self.coco.cats[c]["name"] for c in category_ids]
        self.image_ids = sorted(self.coco.getImgIds())
        images = {f"image {i}": [self.images_dir / self.coco.imgs[i]["file_name"]] for i in self.image_ids}
        require_inside(self.images_dir, images, annotation_file)
        self.transform = transform

    def expected_files(self) -> dict[str, list[ExpectedFile]]:
        """Each image's file, for ``dsc.data.verify``, with the size its record gives."""
        return {
            f"image {image_id}": [
                ExpectedFile(
                    self.images_dir / self.coco.imgs[image_id]["file_name"],
                    size=(self.coco.imgs[image_id]["height"], self.coco.imgs[image_id]["width"]),
                )
            ]
            for image_id in self.image_ids
        }

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
        item = self.read_item(index)
        return self.transform(item) if self.transform else item

    def read_item(self, index: int) -> Item:
        """Item ``index`` before the transform."""
        image_id = self.image_ids[index]
        file_name = self.coco.imgs[image_id]["file_name"]
        image = read_image(self.images_dir / file_name, f"the file is missing or corrupt; {COCO_DOWNLOAD}")
        instances, classes = self.label_maps(image_id)
        if image.shape[-2:] != instances.shape:
            raise InvalidInputError(
                f"{self.images_dir / file_name} is {tuple(image.shape[-2:])} (H, W) but "
                f"{self.annotation_file} annotates image id {image_id} as {instances.shape}: "
                "fix its height and width"
            )
        return {
            "image": image,
            "instances": torch.from_numpy(instances),
            "classes": torch.from_numpy(classes),
        }
