"""Reading the files of instance segmentation data sets, shared by every data set and ``dsc.predict``:
images at their precision, palette label maps, and checks that name the files at fault."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from dsc.contracts import InvalidInputError, MissingFileError
from dsc.labels import VOID

Item = dict[str, Tensor]  # "image" (3, H, W), "instances" and "classes" (H, W), as the data sets give them


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
                raise InvalidInputError(f"mode {image.mode}, expected a palette ('P') PNG")
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read label map {path} ({error}): {what_to_do}") from error
    return torch.from_numpy(array.astype(np.int64))


def check_sizes(item: Item, files: Mapping[str, Path]) -> None:
    """Raise ValueError naming the files when an item's image and label maps differ in size.

    files: the files the item was read from, by item key (``image``, ``instances``, ``classes``).
    """
    sizes = {key: tuple(item[key].shape[-2:]) for key in ("image", "instances", "classes")}
    if len(set(sizes.values())) != 1:
        described = ", ".join(f"{files.get(key, key)} is {h}×{w} (H×W)" for key, (h, w) in sizes.items())
        raise InvalidInputError(
            f"image and label maps differ in size: {described}; the files do not belong together"
        )


def _listed(paths_by_record: Mapping[str, Sequence[Path]]) -> str:
    """The first five records with their paths, and how many more, for an error message."""
    shown = "; ".join(
        f"{record} ({', '.join(map(str, paths))})" for record, paths in list(paths_by_record.items())[:5]
    )
    return shown + (f" and {len(paths_by_record) - 5} more" if len(paths_by_record) > 5 else "")


def first_lines(lines: Sequence[str], shown: int = 10) -> str:
    """The first ``shown`` lines of a list of problems, one per indented line, then how many more."""
    more = f"\n  … and {len(lines) - shown} more" if len(lines) > shown else ""
    return "\n  ".join(lines[:shown]) + more


def require_inside(root: Path, files_by_id: Mapping[str, Sequence[Path]], listed_in: Path | str) -> None:
    """Raise ``InvalidInputError`` naming the records of ``listed_in`` whose files resolve (symlinks
    followed) outside ``root``: a data set's list and annotation files name its own files only, never
    ``../`` or absolute paths elsewhere on the machine."""
    base = Path(root).resolve()
    outside = {
        record: [path for path in paths if not Path(path).resolve().is_relative_to(base)]
        for record, paths in files_by_id.items()
    }
    outside = {record: paths for record, paths in outside.items() if paths}
    if outside:
        raise InvalidInputError(
            f"{len(outside)} record(s) of {listed_in} name files outside the data root {root}: "
            f"{_listed(outside)}. A data set's records may name its own files only: fix them, or put the "
            f"files under {root}"
        )


def require_files(
    files_by_id: Mapping[str, Sequence[Path]], listed_in: Path, what_to_do: str, root: Path | None = None
) -> None:
    """Raise FileNotFoundError listing the image ids of ``listed_in`` whose files are missing; with
    ``root``, first ``require_inside(root, …)``."""
    if root is not None:
        require_inside(root, files_by_id, listed_in)
    missing = {image_id: [p for p in paths if not p.is_file()] for image_id, paths in files_by_id.items()}
    missing = {image_id: paths for image_id, paths in missing.items() if paths}
    if missing:
        raise MissingFileError(
            f"{len(missing)} of the {len(files_by_id)} images listed in {listed_in} have missing files: "
            f"{_listed(missing)}. Complete the data ({what_to_do}) or remove these ids from the list"
        )


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a list file (split files, class names), stripped, in order."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def number_instances(ids: np.ndarray, objects: np.ndarray, void: np.ndarray, source: str) -> np.ndarray:
    """(H, W) int64 instance map from raw per-pixel ids: the distinct ids of the ``objects`` pixels
    become 1..k in id order, ``void`` pixels ``VOID``, the rest 0 (background). Raises ValueError
    naming ``source`` when k exceeds the ``VOID`` − 1 ids an instance map holds."""
    distinct, inverse = np.unique(ids[objects], return_inverse=True)
    if len(distinct) > VOID - 1:
        raise InvalidInputError(
            f"{source} has {len(distinct)} instances; dsc numbers at most {VOID - 1} per image: merge or "
            "void the smallest"
        )
    instances = np.zeros(ids.shape, dtype=np.int64)
    instances[objects] = inverse + 1
    instances[void] = VOID
    return instances


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (a folder, a device or pipe, nothing there), or None."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_dir():
        return "is a folder, not a file"
    if path.exists():
        return "is a device, pipe or socket, not a file"
    return "is a link to nothing" if path.is_symlink() else "does not exist"


def require_file(path: Path, named: str, hint: str) -> None:
    """Raise, unless ``path`` is a file, ``MissingFileError`` (nothing there) or ``InvalidInputError``
    (a folder, device or dangling link): ``"<named> <why>: <hint>"``, e.g. named ``ckpt_path=x.ckpt``."""
    problem = not_a_file(path)
    if problem is not None:
        kind = MissingFileError if not Path(path).exists() else InvalidInputError
        raise kind(f"{named} {problem}: {hint}")
