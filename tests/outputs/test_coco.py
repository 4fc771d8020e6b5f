"""The COCO files of dsc.outputs.coco give pycocotools' COCOeval the mask AP that dsc reports."""

import json

import pytest
import torch

from dsc.data import VOID
from dsc.instances import Instances, true_instances
from dsc.metrics import InstanceScores
from dsc.outputs.coco import CocoResults, coco_mask_ap


def padded_scenes(generator, sizes=((24, 24), (18, 26), (20, 15)), num_objects=4):
    """Instance ids and classes of rectangles (a void column through the middle) in images of
    ``sizes``, padded into one batch (void padding), and the (B, H, W) image area."""
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    ids = torch.full((len(sizes), height, width), VOID)
    classes = torch.full_like(ids, VOID)
    area = torch.zeros(len(sizes), height, width, dtype=torch.bool)
    for image, (h, w) in enumerate(sizes):
        ids[image, :h, :w], classes[image, :h, :w], area[image, :h, :w] = 0, 0, True
        for instance in range(1, num_objects + 1):
            top, left = (
                int(torch.randint(0, h - 4, (1,), generator=generator)),
                int(torch.randint(0, w - 4, (1,), generator=generator)),
            )
            size = int(torch.randint(3, 8, (1,), generator=generator))
            box = (image, slice(top, min(top + size, h)), slice(left, min(left + size, w)))
            ids[box] = instance
            classes[box] = int(torch.randint(1, 4, (1,), generator=generator))
        middle = ids[image, :h, w // 2]
        ids[image, :h, w // 2] = torch.where(middle > 0, VOID, middle)
    classes[ids == VOID] = VOID
    return ids, classes, area


def damaged(instances: Instances, generator) -> Instances:
    """Predictions: true masks shifted at random, some relabelled, with random scores."""
    masks = instances.masks.clone()
    for k in range(len(masks)):
        masks[k] = torch.roll(masks[k], shifts=int(torch.randint(-2, 3, (1,), generator=generator)), dims=1)
    classes = instances.classes.clone()
    flip = torch.rand(len(classes), generator=generator) < 0.3
    classes[flip] = 1 + classes[flip] % 3
    return Instances(masks, classes, torch.rand(len(classes), generator=generator))


@pytest.mark.parametrize("per_class", [True, False])
def test_cocoeval_on_the_files_gives_the_reported_mask_ap(per_class, tmp_path):
    generator = torch.Generator().manual_seed(0)
    ids, classes, area = padded_scenes(generator)
    void = (ids == VOID) | ~area
    targets = true_instances(ids, classes)
    preds = [damaged(image, generator) for image in targets]
    preds = [Instances(p.masks & ~v, p.classes, p.scores) for p, v in zip(preds, void, strict=True)]
    scores = InstanceScores(num_classes=4)
    scores.update(preds, targets, void)
    reported = scores.compute()["mask_ap" if per_class else "agnostic/mask_ap"]

    export = CocoResults(tmp_path, ["background", "disk", "square", "triangle"])
    export.per_class = per_class
    batch = {"instances": ids, "image_area": area}
    export.on_validation_batch_end(None, None, {"instances": preds, "true_instances": targets}, batch, 0)
    export.on_validation_end(None, None)

    assert coco_mask_ap(tmp_path) == pytest.approx(float(reported), abs=1e-6)  # float32 there
    ground_truth = json.loads((tmp_path / "ground_truth_coco.json").read_text())
    assert [(image["height"], image["width"]) for image in ground_truth["images"]] == [
        (24, 24),
        (18, 26),
        (20, 15),
    ]
    names = [category["name"] for category in ground_truth["categories"]]
    assert names == (["disk", "square", "triangle"] if per_class else ["object"])


def test_images_without_instances_give_valid_empty_files(tmp_path):
    empty = torch.zeros(2, 8, 8, dtype=torch.int64)
    nothing = true_instances(empty, empty)
    export = CocoResults(tmp_path)
    export.on_validation_batch_end(
        None, None, {"instances": nothing, "true_instances": nothing}, {"instances": empty}, 0
    )
    export.on_validation_end(None, None)
    assert json.loads((tmp_path / "predictions_coco.json").read_text()) == []
    ground_truth = json.loads((tmp_path / "ground_truth_coco.json").read_text())
    assert len(ground_truth["images"]) == 2 and ground_truth["annotations"] == []
    assert coco_mask_ap(tmp_path) == -1.0
