"""Bad data named before the first step: every file of a data set checked when it is built.

Two levels (``data.verify``):

* ``header`` (the default): every image and label map opens and its header is read: the file
  exists and is an image, its label maps have a mode the data set reads (no RGB colour masks), the
  files of a record agree in size with each other and with their annotation, and JPEG and PNG
  files end as they should (a file that does not is decoded, so a truncated one is caught and one
  with trailing bytes passes). A few training records are read in full, and a set whose sampled
  label maps are entirely void is refused. About 60 µs a file on one core (``benchmarks/data_checks.py``).
* ``full``: every record is also read as training reads it (decoded, ids checked), in parallel
  worker processes, with a progress bar on a terminal.

``none`` skips both (data checked before). The message of a refused set lists its first bad files
and how many records are bad in all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dsc.contracts import InvalidInputError
from dsc.data.files import Item, first_lines
from dsc.labels import VOID
from dsc.ops.progress import progress

Level = Literal["none", "header", "full"]
LEVELS: tuple[Level, ...] = ("none", "header", "full")
SHOWN_PROBLEMS = 10  # bad records listed in a message; the rest are counted
PROBED_RECORDS = 8  # training records read in full at ``header`` level, evenly spaced
# How a file of each format ends when it is whole: JPEG's end-of-image marker, PNG's IEND chunk.
_TAILS = {"JPEG": (b"\xff\xd9", 2), "PNG": (b"IEND\xaeB`\x82", 8)}


@dataclass(frozen=True)
class ExpectedFile:
    """One file of a record and what its header must say.

    modes: the PIL modes a label map may have (``("P",)`` for VOC); None: any image.
    size: (H, W) the record's annotation gives it; None: whatever its record's other files have.
    image: False for a file that is not an image (SBD's ``.mat``): its header check is that it
        exists; ``full`` reads it.
    """

    path: Path
    modes: tuple[str, ...] | None = None
    size: tuple[int, int] | None = None
    image: bool = True


@runtime_checkable
class FileBackedDataset(Protocol):
    """A data set read from files it can list, as the file-backed data sets of ``dsc.data`` are.

    ``expected_files()``: record name → its files, records in item order. ``read_item(i)``: item i
    as the data set reads it, before any transform. ``listed_in``: the list, annotation file or
    folder the records come from, for messages.
    """

    listed_in: Path

    def expected_files(self) -> dict[str, list[ExpectedFile]]: ...

    def read_item(self, index: int) -> Item: ...

    def __len__(self) -> int: ...


def _ends_whole(path: Path, image_format: str | None) -> bool:
    """False when a JPEG or PNG file does not end with its format's last marker."""
    if image_format not in _TAILS:
        return True
    tail, length = _TAILS[image_format]
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        if file.tell() < length:
            return False
        file.seek(-length, os.SEEK_END)
        return file.read(length) == tail


def header_problem(expected: ExpectedFile) -> tuple[tuple[int, int] | None, str | None]:
    """((H, W) or None, the problem or None) of one file, from its header (and its tail)."""
    path = expected.path
    if not expected.image:
        return None, None if path.is_file() else "missing"
    try:
        with Image.open(path) as image:
            width, height = image.size
            mode, image_format = image.mode, image.format
            if not _ends_whole(path, image_format):
                image.load()  # a truncated file fails here; trailing bytes after the marker do not
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return None, f"not a readable image ({error})"
    if expected.modes is not None and mode not in expected.modes:
        hint = (
            ": a colour-coded mask? Label maps hold ids, not colours; save the ids as a palette ('P') "
            "or grey PNG"
            if mode in ("RGB", "RGBA")
            else ""
        )
        return (height, width), f"mode {mode}, expected {' or '.join(expected.modes)}{hint}"
    return (height, width), None


def record_problems(files: Sequence[ExpectedFile]) -> list[str]:
    """The problems of one record's files: each file's header, then their sizes' agreement."""
    problems, sizes = [], {}
    for expected in files:
        size, problem = header_problem(expected)
        if problem:
            problems.append(f"{expected.path}: {problem}")
        elif size is not None:
            sizes[expected.path] = size
            if expected.size is not None and tuple(expected.size) != size:
                h, w = expected.size
                problems.append(f"{expected.path} is {size[0]}×{size[1]} (H×W) but is annotated as {h}×{w}")
    if len(set(sizes.values())) > 1:
        described = ", ".join(f"{Path(*path.parts[-2:])} {h}×{w}" for path, (h, w) in sizes.items())
        problems.append(f"sizes differ (H×W): {described}; the files do not belong together")
    return problems


def _refuse(problems: Mapping[str, list[str]], total: int, listed_in: Path, how: str) -> None:
    lines = [f"{record}: {'; '.join(found)}" for record, found in problems.items()]
    raise InvalidInputError(
        f"{len(problems)} of the {total} records of {listed_in} have bad files ({how}):\n  "
        f"{first_lines(lines, SHOWN_PROBLEMS)}\n"
        f"Fix or replace these files, or remove their records from {listed_in}"
    )


def _progress(items: Iterator, total: int, description: str) -> Iterator:
    """``items`` with a progress bar on a terminal (none in logs)."""
    return progress(items, total=total, desc=description, unit="record")


Records = dict[str, list[ExpectedFile]]  # a data set's ``expected_files()``


def check_headers(dataset: FileBackedDataset, records: Records, description: str = "checking files") -> None:
    """Raise ``InvalidInputError`` listing the records (of ``dataset``'s ``expected_files()``)
    whose files fail ``record_problems``."""
    # One thread: header parsing holds the GIL, and threads measured 2-4 times slower on local disks.
    checked = _progress(map(record_problems, records.values()), len(records), description)
    found = dict(zip(records, checked, strict=True))
    problems = {record: problems for record, problems in found.items() if problems}
    if problems:
        _refuse(problems, len(records), dataset.listed_in, "checked from their headers")


def _labelled_pixels(item: Item) -> int:
    return int((item["instances"] != VOID).sum())


def probe_labels(dataset: FileBackedDataset, records: Records, sampled: int = PROBED_RECORDS) -> None:
    """Raise ``InvalidInputError`` when ``sampled`` evenly spaced items are all entirely void: a
    set whose label maps hold no labels trains on nothing (a loss of 0 throughout)."""
    count, names, reading = len(dataset), list(records), _Reading(dataset)
    sampled = min(sampled, count)
    indices = sorted({round(i * (count - 1) / max(sampled - 1, 1)) for i in range(sampled)})
    read = {names[index]: reading[index] for index in indices}
    problems = {name: [problem] for name, (_, problem) in read.items() if problem}
    if problems:
        _refuse(problems, count, dataset.listed_in, f"read in full, {len(indices)} sampled records")
    if not any(pixels for pixels, _ in read.values()):
        _refuse_void(dataset.listed_in, f"{len(indices)} records read evenly across it ({', '.join(read)})")


def _refuse_void(listed_in: Path, which: str) -> None:
    raise InvalidInputError(
        f"the label maps of {listed_in} are entirely void (label {VOID}) in {which}: training on them "
        f"learns nothing (a loss of 0 throughout). Check that the masks hold ids (0 background, "
        f"{VOID} void), not colours or another void value"
    )


class _Reading(Dataset):
    """Item i of a data set read in full: (labelled pixels, None), or (0, the problem)."""

    def __init__(self, dataset: FileBackedDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, str | None]:
        try:
            return _labelled_pixels(self.dataset.read_item(index)), None
        except Exception as error:  # any failure to read a record is a problem of that record
            return 0, f"{type(error).__name__}: {error}"


def check_full(
    dataset: FileBackedDataset, records: Records, workers: int, description: str = "reading files"
) -> int:
    """Read every record as training does, in ``workers`` processes (0: this one); raise
    ``InvalidInputError`` listing the records that fail. Returns the labelled (non-void) pixels."""
    loader = DataLoader(_Reading(dataset), batch_size=None, num_workers=workers)
    names = list(records)
    problems: dict[str, list[str]] = {}
    labelled = 0
    with torch.inference_mode():
        for index, (pixels, problem) in enumerate(_progress(iter(loader), len(names), description)):
            labelled += pixels
            if problem:
                problems[names[index]] = [problem]
    if problems:
        _refuse(problems, len(records), dataset.listed_in, "read in full")
    return labelled


def verify_dataset(
    dataset: Dataset, level: Level, workers: int = 0, training: bool = False, name: str = "data"
) -> None:
    """Check a file-backed data set at ``level`` (module docstring); other data sets pass as they are.

    training: also refuse a set whose label maps are all void (sampled at ``header``, all at ``full``).
    """
    if level not in LEVELS:
        raise InvalidInputError(f"data.verify={level!r}: expected one of {', '.join(LEVELS)}")
    if level == "none" or not isinstance(dataset, FileBackedDataset):
        return
    records = dataset.expected_files()
    check_headers(dataset, records, f"checking {name} files")
    if level == "full":
        labelled = check_full(dataset, records, workers, f"reading {name} files")
        if training and not labelled:
            _refuse_void(dataset.listed_in, "every record")
    elif training:
        probe_labels(dataset, records)
