"""Your own data: a folder of images with instance masks beside them (``data=folder``).

Two layouts, chosen per split:

* sub-folders: ``root/<split>/images/<name>.<ext>``, ``root/<split>/instances/<name>.png`` and,
  optionally, ``root/<split>/classes/<name>.png``;
* list files: ``root/<split>.txt`` (one name per line) naming files in ``root/images/``,
  ``root/instances/`` and, optionally, ``root/classes/``.

``root/<split>.txt`` wins where both exist. Images may be JPEG, PNG, BMP, TIFF or WebP.

Instance masks are PNGs: 8-bit (palette indices as VOC's ``SegmentationObject``, or grey): 0
background, 255 void, 1..254 instances; or 16-bit grey: 0 background, 65535 void, any other value
an instance (renumbered 1..k; at most 254 per image). Class maps (optional) are 8-bit PNGs: 0
background, 255 void, 1..C classes, named one per line in ``root/classes.txt`` (background first),
which they require. Without class maps every instance is of class 1, "object". Items follow VOC's
conventions (0 background, 255 void) and so share its augmentation, sampling and validation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dsc.contracts import InvalidInputError, MissingFileError
from dsc.data.files import Item, check_sizes, number_instances, read_image, read_lines, require_files
from dsc.data.verify import ExpectedFile
from dsc.labels import VOID

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VOID_16_BIT = 65535
CLASS_MODES = ("P", "L")  # PIL modes of 8-bit PNGs: class maps, and instance masks
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I")  # PIL modes of 16-bit instance PNGs
INSTANCE_MODES = CLASS_MODES + SIXTEEN_BIT_MODES
LAYOUTS = (
    "root/<split>/images/, root/<split>/instances/ (and optionally root/<split>/classes/), or "
    "root/<split>.txt listing names in root/images/, root/instances/ (and root/classes/); "
    "see docs/datasets.md"
)


def read_instance_png(path: Path) -> np.ndarray:
    """(H, W) int64 instance map of an 8-bit or 16-bit instance PNG (rules in the module docstring)."""
    with Image.open(path) as image:
        mode = image.mode
        values = np.asarray(image)
    if mode in CLASS_MODES:
        return values.astype(np.int64)
    if mode in SIXTEEN_BIT_MODES:
        void = values == VOID_16_BIT
        return number_instances(values, (values != 0) & ~void, void, str(path))
    raise InvalidInputError(
        f"{path} is a {mode} image: instance masks are 8-bit palette or grey PNGs (0 background, "
        "255 void) or 16-bit grey PNGs (0 background, 65535 void)"
    )


def read_class_png(path: Path, num_classes: int) -> np.ndarray:
    """(H, W) int64 class map of an 8-bit class PNG, each value a class of ``classes.txt`` or void."""
    with Image.open(path) as image:
        if image.mode not in CLASS_MODES:
            raise InvalidInputError(
                f"{path} is a {image.mode} image: class maps are 8-bit palette or grey PNGs"
            )
        classes = np.asarray(image).astype(np.int64)
    unknown = np.unique(classes[(classes >= num_classes) & (classes != VOID)])
    if len(unknown):
        raise InvalidInputError(
            f"{path} holds class values {unknown.tolist()[:5]}, but classes.txt names only classes "
            f"0..{num_classes - 1}: add their names to classes.txt or make those pixels 255 (void)"
        )
    return classes


class FolderInstances(Dataset):
    """A split of a folder of images with instance masks (layouts and rules in the module docstring).

    root: the data folder; split: ``train``, ``val`` or any name the folder uses.
    Items: ``image`` (3, H, W) float in [0, 1], ``instances`` and ``classes`` (H, W) int64 (0
    background, 255 void), then ``transform`` if given. ``class_names[c]``: class c's name.
    """

    def __init__(
        self, root: str | Path, split: str = "train", transform: Callable[[Item], Item] | None = None
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingFileError(
                f"data folder {self.root} does not exist: pass paths.folder_root=<dir> holding {LAYOUTS}"
            )
        list_file, split_dir = self.root / f"{split}.txt", self.root / split
        if list_file.is_file():
            self.folder = self.root
            names = read_lines(list_file)
            listed_in = list_file
        elif (split_dir / "images").is_dir():
            self.folder = split_dir
            names = None  # every image of the folder
            listed_in = split_dir / "images"
        else:
            raise MissingFileError(f"data folder {self.root} has no split {split!r}: expected {LAYOUTS}")
        images = self.folder / "images"
        found = [p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES] if images.is_dir() else []
        self._images = {p.stem: p for p in found}
        if names is None:
            names = sorted(self._images)
        if not names:
            raise InvalidInputError(f"{listed_in} names no images for split {split!r}")
        self.with_classes = (self.folder / "classes").is_dir()
        names_file = self.root / "classes.txt"
        if names_file.is_file():
            self.class_names = read_lines(names_file)
        elif self.with_classes:
            raise MissingFileError(
                f"{self.folder / 'classes'} holds class maps but {names_file} does not exist: write the "
                "class names there, one per line, background first"
            )
        else:
            self.class_names = ["background", "object"]
        self.names = names
        self.listed_in = listed_in
        files = {name: list(self.files(name).values()) for name in names}
        require_files(files, listed_in, LAYOUTS, root=self.root)
        self.transform = transform

    def files(self, name: str) -> dict[str, Path]:
        """The image and label files of one image, by item key."""
        files = {
            "image": self._images.get(name, self.folder / "images" / f"{name}.jpg"),
            "instances": self.folder / "instances" / f"{name}.png",
        }
        if self.with_classes:
            files["classes"] = self.folder / "classes" / f"{name}.png"
        return files

    def expected_files(self) -> dict[str, list[ExpectedFile]]:
        """Each name's files, for ``dsc.data.verify``, with the modes its label maps may have."""
        modes = {"image": None, "instances": INSTANCE_MODES, "classes": CLASS_MODES}
        return {
            name: [ExpectedFile(path, modes=modes[key]) for key, path in self.files(name).items()]
            for name in self.names
        }

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Item:
        item = self.read_item(index)
        return self.transform(item) if self.transform else item

    def read_item(self, index: int) -> Item:
        """Item ``index`` before the transform."""
        files = self.files(self.names[index])
        try:
            instances = read_instance_png(files["instances"])
            if self.with_classes:
                classes = read_class_png(files["classes"], len(self.class_names))
            else:
                classes = np.where(instances == VOID, VOID, (instances > 0).astype(np.int64))
        except OSError as error:
            raise OSError(
                f"cannot read the label maps of {files['image'].relative_to(self.root)} "
                f"(in {self.root}): {error}"
            ) from error
        item = {
            "image": read_image(files["image"], f"the file is missing or corrupt ({LAYOUTS})"),
            "instances": torch.from_numpy(instances),
            "classes": torch.from_numpy(classes),
        }
        check_sizes(item, files)
        # Void in either map is void in both (VOC's convention).
        void = (item["instances"] == VOID) | (item["classes"] == VOID)
        item["instances"] = item["instances"].masked_fill(void, VOID)
        item["classes"] = item["classes"].masked_fill(void, VOID)
        return item
