"""A small Cityscapes tree (gtFine and leftImg8bit as distributed) and cityscapesscripts' own
instance-level evaluation of a results folder, for the tests of dsc's Cityscapes files."""

import copy
import json
from pathlib import Path

import numpy as np
from PIL import Image

CITY = "aachen"
FRAMES = ("000000_000019", "000001_000019")


def scene(frame: int) -> np.ndarray:
    """(64, 96) uint16 instanceIds of one frame: road, two cars, a person, an ego-vehicle band."""
    values = np.full((64, 96), 7, dtype=np.uint16)  # road
    values[8:28, 6 + 10 * frame : 36 + 10 * frame] = 26000  # car 0
    values[36:60, 50:80] = 26001  # car 1
    values[20:56, 84:94] = 24000 + frame  # a person
    values[60:, :] = 1  # ego vehicle: ignored in evaluation
    return values


def write_cityscapes_tree(root: Path, split: str = "val") -> list[Path]:
    """gtFine ``*_instanceIds.png`` and ``*_labelIds.png`` and leftImg8bit images of FRAMES;
    returns the images."""
    ground_truth, images = root / "gtFine" / split / CITY, root / "leftImg8bit" / split / CITY
    ground_truth.mkdir(parents=True)
    images.mkdir(parents=True)
    written = []
    for index, frame in enumerate(FRAMES):
        values = scene(index)
        name = f"{CITY}_{frame}"
        Image.fromarray(values).save(ground_truth / f"{name}_gtFine_instanceIds.png")
        label_ids = np.where(values >= 1000, values // 1000, values).astype(np.uint8)
        Image.fromarray(label_ids).save(ground_truth / f"{name}_gtFine_labelIds.png")
        colours = (np.stack([values % 251, values // 7 % 251, values // 13 % 251], axis=2)).astype(np.uint8)
        Image.fromarray(colours).save(images / f"{name}_leftImg8bit.png")
        written.append(images / f"{name}_leftImg8bit.png")
    return written


def cityscapes_instance_ap(root: Path, results: Path, work_dir: Path, split: str = "val") -> dict:
    """cityscapesscripts' instance-level evaluation of ``results`` against ``root``'s gtFine
    (its ``averages``: ``allAp``, ``allAp50%``, per class). Run with ``work_dir`` as the current
    folder: the script writes matches.json there."""
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as evaluation

    args = copy.copy(evaluation.args)
    args.predictionPath = str(results.resolve())
    args.predictionWalk = None
    args.gtInstancesFile = str(work_dir / "gtInstances.json")
    args.exportFile = str(work_dir / "result.json")
    args.quiet = True
    ground_truth = sorted(str(p) for p in (root / "gtFine" / split).glob("*/*_gtFine_instanceIds.png"))
    predictions = [evaluation.getPrediction(file, args) for file in ground_truth]
    # Two mends for cityscapesscripts 2.3.0 under NumPy 2.4, its evaluation logic untouched: it calls
    # np.in1d, which NumPy 2.4 removed (np.isin replaces it), and writes NumPy integers to JSON.
    removed = not hasattr(np, "in1d")
    if removed:
        np.in1d = np.isin
    write_json = evaluation.writeDict2JSON
    evaluation.writeDict2JSON = lambda data, name: Path(name).write_text(json.dumps(data, default=_plain))
    try:
        return evaluation.evaluateImgLists(predictions, ground_truth, args)["averages"]
    finally:
        evaluation.writeDict2JSON = write_json
        if removed:
            del np.in1d


def _plain(value):
    """What cityscapesscripts' JSON writer makes of objects, also for NumPy scalars."""
    return value.item() if isinstance(value, np.generic) else value.__dict__
