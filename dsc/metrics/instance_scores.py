"""Mask AP and panoptic quality of instances, from the libraries the field uses: torchmetrics'
``MeanAveragePrecision(iou_type="segm")`` (pycocotools' COCOeval underneath) and ``PanopticQuality``.

Conventions, the libraries' own where they exist:

* mask AP is COCO's: mean over IoU 0.50:0.05:0.95 and the classes present, up to 100 detections
  per image and class; AP50 and AP75 at one IoU; the same numbers as COCOeval on the same masks.
  It is −1 when the ground truth has no instance at all.
* PQ, SQ and RQ average over the categories that occur (background as stuff, object classes as
  things); with no segment at all (every pixel void) torchmetrics gives NaN, reported here as 0.
* Void pixels are outside every mask and are void in both panoptic maps, so matching ignores them.
  True instances whose class is outside the model's classes are void for PQ and unmatched for AP.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision, PanopticQuality

from dsc.instances import OBJECT, Instances, panoptic_maps
from dsc.labels import BACKGROUND

# COCOeval's thresholds in float64: torchmetrics' defaults come from a float32 linspace (0.55 is
# 0.550000012 there), which misses matches whose IoU is exactly a threshold, common on small masks.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).tolist()
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101).tolist()


def _mask_ap() -> MeanAveragePrecision:
    metric = MeanAveragePrecision(
        iou_type="segm",
        backend="pycocotools",
        iou_thresholds=COCO_IOU_THRESHOLDS,
        rec_thresholds=COCO_RECALL_THRESHOLDS,
        sync_on_compute=False,  # gathered by _compute_mask_ap instead
    )
    metric.warn_on_many_detections = False  # a partition often has more than COCO's 100 segments
    return metric


def _round_robin(per_process: list[list]) -> list:
    """One list from each process's per-image lists, in the order of a round-robin sampler
    (image k of process r is image r + k·world_size, as Lightning's ``UnrepeatedDistributedSampler``
    deals them), so that score ties break as they do in one process."""
    merged = []
    for k in range(max((len(images) for images in per_process), default=0)):
        merged.extend(images[k] for images in per_process if k < len(images))
    return merged


def _compute_mask_ap(metric: MeanAveragePrecision) -> dict[str, Tensor]:
    """``metric.compute()`` over the images of every DDP process.

    torchmetrics gathers list states one element at a time, so processes with different numbers
    of images (an evaluation sampler that repeats none) would wait on each other forever; here each
    process sends its whole state once, as an object, and the metric computes on the union.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return metric.compute()
    local = metric.metric_state
    try:
        for name, images in local.items():
            on_cpu = [image.cpu() if isinstance(image, Tensor) else image for image in images]
            per_process: list = [None] * dist.get_world_size()
            dist.all_gather_object(per_process, on_cpu)
            setattr(metric, name, _round_robin(per_process))
        return metric.compute()
    finally:
        for name, images in local.items():
            setattr(metric, name, images)


def _panoptic_quality(things: set[int]) -> PanopticQuality:
    return PanopticQuality(
        things=things, stuffs={BACKGROUND}, allow_unknown_preds_category=True, return_sq_and_rq=True
    )


def _as_detections(instances: list[Instances], with_scores: bool) -> list[dict[str, Tensor]]:
    detections = []
    for image in instances:
        detection = {"masks": image.masks, "labels": image.classes}
        if with_scores:
            detection["scores"] = image.scores.float()
        detections.append(detection)
    return detections


class InstanceScores(nn.Module):
    """Mask AP and PQ of predicted against true instances, per class (when ``num_classes`` > 1:
    classes 1..C−1 are things) and class-agnostic (every instance an "object").

    ``compute()`` returns ``mask_ap``, ``mask_ap50``, ``mask_ap75``, ``pq``, ``sq``, ``rq`` and the
    same under ``agnostic/``, over the images of every DDP process.
    """

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.per_class = num_classes > 1
        if self.per_class:
            self.mask_ap = _mask_ap()
            self.panoptic_quality = _panoptic_quality(set(range(1, num_classes)))
        self.agnostic_mask_ap = _mask_ap()
        self.agnostic_panoptic_quality = _panoptic_quality({OBJECT})

    def update(self, preds: list[Instances], targets: list[Instances], void: Tensor) -> None:
        """preds, targets: one ``Instances`` per image; void: (B, H, W) bool, True where ignored."""
        void = void.to(self.agnostic_panoptic_quality.iou_sum.device)
        agnostic_preds = [image.class_agnostic() for image in preds]
        agnostic_targets = [image.class_agnostic() for image in targets]
        pairs = [(self.agnostic_mask_ap, self.agnostic_panoptic_quality, agnostic_preds, agnostic_targets)]
        if self.per_class:
            pairs.append((self.mask_ap, self.panoptic_quality, preds, targets))
        for mask_ap, panoptic_quality, predicted, true in pairs:
            mask_ap.update(_as_detections(predicted, True), _as_detections(true, False))
            panoptic_quality.update(panoptic_maps(predicted, void), panoptic_maps(true, void))

    def compute(self) -> dict[str, Tensor]:
        scores = self._scores(self.agnostic_mask_ap, self.agnostic_panoptic_quality, "agnostic/")
        if self.per_class:
            scores |= self._scores(self.mask_ap, self.panoptic_quality, "")
        return scores

    @staticmethod
    def _scores(mask_ap: MeanAveragePrecision, panoptic_quality: PanopticQuality, prefix: str) -> dict:
        ap = _compute_mask_ap(mask_ap)
        pq, sq, rq = torch.nan_to_num(panoptic_quality.compute().float(), nan=0.0).flatten()[:3]
        return {
            f"{prefix}mask_ap": ap["map"],
            f"{prefix}mask_ap50": ap["map_50"],
            f"{prefix}mask_ap75": ap["map_75"],
            f"{prefix}pq": pq,
            f"{prefix}sq": sq,
            f"{prefix}rq": rq,
        }

    def reset(self) -> None:
        for metric in self.children():
            metric.reset()
