"""Cityscapes results files, scored by cityscapesscripts' own instance-level evaluation."""

import pytest
import torch
from cityscapes_trees import FRAMES, cityscapes_instance_ap, write_cityscapes_tree

from dsc.data import CityscapesInstances
from dsc.instances import Instances, true_instances
from dsc.outputs.cityscapes import CityscapesInstanceFiles


def write_results(root, results, damage=False, empty=False):
    """The ground truth's own instances through dsc's writer; ``damage``: the second car loses
    the lower half of its mask and the person is called a rider; ``empty``: no instances at all."""
    dataset = CityscapesInstances(root, "val")
    writer = CityscapesInstanceFiles(results)
    for index, image_file in enumerate(sorted((root / "leftImg8bit" / "val").glob("*/*.png"))):
        item = dataset[index]
        (instances,) = true_instances(item["instances"].unsqueeze(0), item["classes"].unsqueeze(0))
        masks, classes = instances.masks.clone(), instances.classes.clone()
        if damage:
            car = torch.nonzero(classes == 3).flatten()[-1]
            rows = torch.nonzero(masks[car].any(dim=1)).flatten()
            masks[car, rows[len(rows) // 2] :] = False
            classes[classes == 1] = 2
        if empty:
            masks, classes = masks[:0], classes[:0]
        scores = torch.linspace(0.9, 0.5, len(classes))
        predicted = Instances(masks, classes, scores)
        writer.add(image_file, image_file.stem, item["image"], item["instances"], predicted)
    writer.finish()


def test_true_instances_score_ap_1_and_damaged_ones_less(tmp_path, monkeypatch):
    root = tmp_path / "cityscapes"
    write_cityscapes_tree(root)
    monkeypatch.chdir(tmp_path)
    perfect, damaged = tmp_path / "perfect", tmp_path / "damaged"
    write_results(root, perfect)
    write_results(root, damaged, damage=True)
    lines = (perfect / f"aachen_{FRAMES[0]}_leftImg8bit.txt").read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["24", "26", "26"]  # person, car, car: label ids
    assert all(line.startswith("masks/") and float(line.split()[2]) <= 1 for line in lines)

    scores = cityscapes_instance_ap(root, perfect, tmp_path)
    assert scores["allAp"] == pytest.approx(1.0)
    assert scores["classes"]["car"]["ap"] == pytest.approx(1.0)
    worse = cityscapes_instance_ap(root, damaged, tmp_path)
    assert worse["allAp"] < 0.7
    assert 0 < worse["classes"]["car"]["ap"] < 1 and worse["classes"]["person"]["ap"] == 0


def test_an_image_without_instances_gets_an_empty_results_file(tmp_path, monkeypatch):
    root = tmp_path / "cityscapes"
    write_cityscapes_tree(root)
    monkeypatch.chdir(tmp_path)
    write_results(root, tmp_path / "none", empty=True)
    assert (tmp_path / "none" / f"aachen_{FRAMES[1]}_leftImg8bit.txt").read_text() == ""
    assert cityscapes_instance_ap(root, tmp_path / "none", tmp_path)["classes"]["car"]["ap"] == 0
