"""The Semantic Boundaries Dataset (Hariharan et al., 2011): FCN's training set for VOC.

Reads ``benchmark_RELEASE/dataset`` as distributed: ``img/*.jpg``, ``inst/*.mat`` (GTinst),
``cls/*.mat`` (GTcls) and ``train.txt`` / ``val.txt``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from scipy.io import loadmat
from scipy.io.matlab import MatReadError
from torch.utils.data import Dataset

from dsc.contracts import InvalidInputError, MissingFileError
from dsc.data.files import Item, check_sizes, read_image, read_lines, require_files
from dsc.data.verify import ExpectedFile
from dsc.data.voc import VOC_CLASSES

SBD_DOWNLOAD = (
    "download benchmark.tgz (http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
    "benchmark.tgz), extract it into $DSC_DATA (or pass paths.sbd_root=<dir>/benchmark_RELEASE/dataset)"
)


def read_mat_segmentation(path: Path, struct: str) -> torch.Tensor:
    """The ``Segmentation`` map of an SBD .mat file's ``GTinst`` / ``GTcls`` struct, (H, W) int64."""
    try:
        record = loadmat(str(path), squeeze_me=True, struct_as_record=False)[struct]
        return torch.from_numpy(record.Segmentation.astype("int64"))
    except (OSError, ValueError, KeyError, AttributeError, MatReadError) as error:
        raise OSError(f"cannot read {struct}.Segmentation from {path} ({error}): {SBD_DOWNLOAD}") from error


class SBDInstances(Dataset):
    """SBD images with instance and class maps, as ``VOCInstances`` items (SBD has no void band).

    exclude_ids_file: a list of image ids to drop, e.g. VOC 2012's
        ``ImageSets/Segmentation/val.txt`` so that training never sees VOC validation images.
    """

    class_names = VOC_CLASSES

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[[Item], Item] | None = None,
        exclude_ids_file: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingFileError(f"SBD root {self.root} does not exist: {SBD_DOWNLOAD}")
        for folder in ("img", "inst", "cls"):
            if not (self.root / folder).is_dir():
                raise MissingFileError(f"SBD root {self.root} has no {folder}/: {SBD_DOWNLOAD}")
        split_file = self.root / f"{split}.txt"
        self.listed_in = split_file
        if not split_file.is_file():
            raise MissingFileError(
                f"SBD split file {split_file} does not exist (splits: train, val): {SBD_DOWNLOAD}"
            )
        ids = read_lines(split_file)
        if exclude_ids_file is not None:
            exclude_path = Path(exclude_ids_file)
            if not exclude_path.is_file():
                raise MissingFileError(f"exclude_ids_file {exclude_path} does not exist")
            excluded = set(read_lines(exclude_path))
            ids = [image_id for image_id in ids if image_id not in excluded]
        if not ids:
            raise InvalidInputError(f"no SBD images left in {split_file}")
        self.ids = ids
        require_files(
            {image_id: list(self.files(image_id).values()) for image_id in ids},
            split_file,
            SBD_DOWNLOAD,
            root=self.root,
        )
        self.transform = transform

    def files(self, image_id: str) -> dict[str, Path]:
        """The image and label files of one image, by item key."""
        return {
            "image": self.root / "img" / f"{image_id}.jpg",
            "instances": self.root / "inst" / f"{image_id}.mat",
            "classes": self.root / "cls" / f"{image_id}.mat",
        }

    def expected_files(self) -> dict[str, list[ExpectedFile]]:
        """Each image id's files, for ``dsc.data.verify``: the .mat files are read only in full."""
        return {
            image_id: [ExpectedFile(path, image=key == "image") for key, path in self.files(image_id).items()]
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
        item = {
            "image": read_image(files["image"], SBD_DOWNLOAD),
            "instances": read_mat_segmentation(files["instances"], "GTinst"),
            "classes": read_mat_segmentation(files["classes"], "GTcls"),
        }
        check_sizes(item, files)
        return item
