"""Mask AP against pycocotools' COCOeval run directly, PQ against a per-segment reference, and the
awkward inputs: no instances, single pixels, hundreds of instances, unknown classes."""

import math

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dsc.contracts import NetworkOutputs
from dsc.data import VOID
from dsc.instances import Instances, predicted_instances, true_instances
from dsc.metrics import InstanceScores


def random_scene(generator, height=24, width=24, num_objects=4, num_classes=3):
    """Instance ids (0 background, 1..k, a void band) and classes of overlapping rectangles."""
    ids = torch.zeros(height, width, dtype=torch.int64)
    classes = torch.zeros(height, width, dtype=torch.int64)
    for instance in range(1, num_objects + 1):
        top, left = torch.randint(0, height - 6, (2,), generator=generator).tolist()
        size_y, size_x = torch.randint(3, 9, (2,), generator=generator).tolist()
        ids[top : top + size_y, left : left + size_x] = instance
        classes[top : top + size_y, left : left + size_x] = int(
            torch.randint(1, num_classes + 1, (1,), generator=generator)
        )
    ids[:, width // 2] = torch.where(ids[:, width // 2] > 0, VOID, 0)
    classes[ids == VOID] = VOID
    return ids, classes


def damaged(instances: Instances, generator) -> Instances:
    """Predictions: the true masks shifted or eroded at random, some relabelled, with random scores."""
    masks = instances.masks.clone()
    for k in range(len(masks)):
        if torch.rand(1, generator=generator) < 0.5:
            masks[k] = torch.roll(
                masks[k], shifts=int(torch.randint(-2, 3, (1,), generator=generator)), dims=1
            )
    classes = instances.classes.clone()
    flip = torch.rand(len(classes), generator=generator) < 0.3
    classes[flip] = 1 + classes[flip] % 3
    scores = torch.rand(len(classes), generator=generator)
    return Instances(masks, classes, scores)


def coco_reference(preds, targets, shape):
    """COCOeval(iouType="segm") stats [AP, AP50, AP75] on the same instances."""
    images = [{"id": i, "height": shape[0], "width": shape[1]} for i in range(len(targets))]
    annotations, results = [], []
    for image_id, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        for mask, class_id in zip(target.masks.numpy(), target.classes.tolist(), strict=True):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": class_id,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": list(mask_utils.toBbox(rle)),
                    "iscrowd": 0,
                }
            )
        for mask, class_id, score in zip(
            pred.masks.numpy(), pred.classes.tolist(), pred.scores.tolist(), strict=True
        ):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            results.append(
                {"image_id": image_id, "category_id": class_id, "segmentation": rle, "score": score}
            )
    truth = COCO()
    truth.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c} for c in (1, 2, 3)],
    }
    truth.createIndex()
    evaluation = COCOeval(truth, truth.loadRes(results), iouType="segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return evaluation.stats[:3]


def panoptic_reference(pred_map, true_map, things, void):
    """PQ, SQ, RQ of one batch of (B, H, W, 2) maps by the COCO panoptic definition, segment by
    segment: matches are same-category pairs with IoU > 0.5 over non-void pixels; unmatched
    segments more than half void are ignored; averages over categories that occur."""
    stats = {}
    for image in range(pred_map.shape[0]):
        pred, true = pred_map[image].reshape(-1, 2), true_map[image].reshape(-1, 2)
        is_void = true[:, 0] == void
        pred_segments = {tuple(c) for c in pred[~is_void].tolist()}
        true_segments = {tuple(c) for c in true[~is_void].tolist()}
        matched_pred, matched_true = set(), set()
        for p in pred_segments:
            for t in true_segments:
                if p[0] != t[0]:
                    continue
                in_p = (pred == torch.tensor(p)).all(dim=1)
                in_t = (true == torch.tensor(t)).all(dim=1)
                intersection = (in_p & in_t).sum().item()
                union = (in_p & ~is_void).sum().item() + in_t.sum().item() - intersection
                if intersection / union > 0.5:
                    entry = stats.setdefault(p[0], [0.0, 0, 0, 0])
                    entry[0] += intersection / union
                    entry[1] += 1
                    matched_pred.add(p)
                    matched_true.add(t)
        for t in true_segments - matched_true:
            stats.setdefault(t[0], [0.0, 0, 0, 0])[3] += 1
        for p in pred_segments - matched_pred:
            in_p = (pred == torch.tensor(p)).all(dim=1)
            if (in_p & is_void).sum() / in_p.sum() <= 0.5:
                stats.setdefault(p[0], [0.0, 0, 0, 0])[2] += 1
    pq, sq, rq = [], [], []
    for iou_sum, tp, fp, fn in stats.values():
        sq.append(iou_sum / tp if tp else 0.0)
        rq.append(tp / (tp + fp / 2 + fn / 2))
        pq.append(sq[-1] * rq[-1])
    return np.mean(pq), np.mean(sq), np.mean(rq)


@pytest.fixture(scope="module")
def scored_scenes():
    generator = torch.Generator().manual_seed(3)
    scenes = [random_scene(generator) for _ in range(4)]
    ids = torch.stack([scene[0] for scene in scenes])
    classes = torch.stack([scene[1] for scene in scenes])
    targets = true_instances(ids, classes)
    preds = [damaged(target, generator) for target in targets]
    metric = InstanceScores(num_classes=4)
    metric.update(preds, targets, ids == VOID)
    return preds, targets, ids, metric.compute()


def test_mask_ap_equals_cocoeval(scored_scenes):
    preds, targets, ids, scores = scored_scenes
    reference = coco_reference(preds, targets, ids.shape[1:])
    assert 0.1 < reference[0] < 0.95  # the damage matters, but not everything is lost
    for name, expected in zip(("mask_ap", "mask_ap50", "mask_ap75"), reference, strict=True):
        assert float(scores[name]) == pytest.approx(expected, abs=1e-6), name


def test_class_agnostic_mask_ap_equals_cocoeval_with_one_class(scored_scenes):
    preds, targets, ids, scores = scored_scenes
    reference = coco_reference(
        [p.class_agnostic() for p in preds], [t.class_agnostic() for t in targets], ids.shape[1:]
    )
    assert float(scores["agnostic/mask_ap"]) == pytest.approx(reference[0], abs=1e-6)


def test_panoptic_quality_equals_the_per_segment_definition(scored_scenes):
    from dsc.instances import panoptic_maps

    preds, targets, ids, scores = scored_scenes
    void = ids == VOID
    expected = panoptic_reference(panoptic_maps(preds, void), panoptic_maps(targets, void), {1, 2, 3}, VOID)
    for name, value in zip(("pq", "sq", "rq"), expected, strict=True):
        assert float(scores[name]) == pytest.approx(value, abs=1e-6), name


def test_perfect_instances_score_one(scored_scenes):
    _, targets, ids, _ = scored_scenes
    metric = InstanceScores(num_classes=4)
    metric.update(targets, targets, ids == VOID)
    assert all(float(value) == pytest.approx(1.0) for value in metric.compute().values())


def test_awkward_inputs_give_no_nan():
    """No instance anywhere, a single-pixel instance, 300 instances in one image, a true class the
    model does not know: the libraries' conventions (AP −1 without ground truth), never NaN."""
    height = width = 40
    empty = torch.zeros(2, height, width, dtype=torch.int64)
    all_void = torch.full((1, height, width), VOID)
    metric = InstanceScores(num_classes=3)
    metric.update(true_instances(empty, empty), true_instances(empty, empty), empty.bool())
    metric.update(true_instances(all_void, all_void), true_instances(all_void, all_void), all_void == VOID)
    no_instances = metric.compute()
    assert all(math.isfinite(float(value)) for value in no_instances.values())
    assert float(no_instances["mask_ap"]) == -1.0

    # Predictions: 300 segments and a single-pixel one; truth: 254 instances (the most an image's
    # uint8 ids hold) and a single-pixel instance of a class the model does not know.
    segments = (torch.arange(height * width).view(1, height, width) // 2 % 300).long()
    segments[0, 0, 1] = 300
    logits = torch.nn.functional.one_hot(1 + segments % 2, 3).permute(0, 3, 1, 2).float()
    preds = predicted_instances(segments, NetworkOutputs(None, logits))
    assert len(preds[0]) == 301
    ids = (torch.arange(height * width).view(1, height, width) // 2 % 253 + 1).long()
    ids[0, 0, 1] = 254
    classes = 1 + ids % 2
    classes[0, 0, 1] = 7
    metric = InstanceScores(num_classes=3)
    metric.update(preds, true_instances(ids, classes), torch.zeros_like(ids, dtype=torch.bool))
    scores = metric.compute()
    assert all(math.isfinite(float(value)) for value in scores.values())
    assert 0.0 <= float(scores["pq"]) < 1.0
