"""COCO files of a scored split: ``predictions_coco.json`` (COCO's results format) and
``ground_truth_coco.json`` (COCO's annotation format), so that pycocotools' ``COCOeval`` or an
evaluation server can score dsc's instances itself (``python -m dsc.evaluate … export=coco``);
and the results file of new images (``python -m dsc.predict … format=coco``, ``CocoPredictionFile``).

Conventions, the same as the mask AP that dsc reports (``dsc.metrics.InstanceScores``):

* Image ids are 1, 2, … in the order of the scored split, or, for a COCO data set, its own ids;
  each mask is cropped to its image's own size (a batch's padding is not part of it).
* Void pixels are outside every predicted and true mask; every annotation has ``iscrowd`` 0.
* A model with a class head exports its classes (category id = dsc's class id, named after the data
  set's class names; for a COCO data set, its own category ids and records) and is compared with
  ``val/mask_ap``; a model without one exports class-agnostic instances (category 1, "object") and
  is compared with ``val/agnostic/mask_ap``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pycocotools import mask as mask_utils
from torch import Tensor

from dsc.contracts import InvalidInputError
from dsc.instances import OBJECT, DroppedInstances, Instances, InstanceThresholds
from dsc.outputs.files import write_text

PREDICTIONS_FILE = "predictions_coco.json"
GROUND_TRUTH_FILE = "ground_truth_coco.json"
IMAGES_FILE = "images_coco.json"  # dsc.predict: the images and categories of its results


def encode_mask(mask: Tensor) -> tuple[dict[str, Any], list[float]]:
    """(H, W) bool mask → COCO's compressed RLE with ``counts`` as text (JSON-ready), and its
    [x, y, width, height] box."""
    rle = mask_utils.encode(np.asfortranarray(mask.cpu().numpy().astype(np.uint8)))
    box = [float(v) for v in mask_utils.toBbox(rle)]
    return {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}, box


def image_size(image_area: Tensor | None, height: int, width: int) -> tuple[int, int]:
    """An image's own (height, width) inside a padded (H, W) batch: the extent of its area."""
    if image_area is None:
        return height, width
    rows, columns = image_area.any(dim=1), image_area.any(dim=0)
    return int(rows.sum()), int(columns.sum())


def instance_records(
    instances: Instances,
    image_id: int,
    size: tuple[int, int],
    with_scores: bool = False,
    category_ids: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """COCO records of one image's instances, masks cropped to ``size`` (height, width): results
    (with ``score``) or annotations (with ``area`` and ``bbox``; the caller numbers them).
    ``category_ids[c]``: the category id of dsc class c (default: c itself)."""
    records = []
    for mask, klass, score in zip(
        instances.masks[:, : size[0], : size[1]], instances.classes.tolist(), instances.scores, strict=True
    ):
        rle, box = encode_mask(mask)
        category = klass if category_ids is None else category_ids[klass]
        record = {"image_id": image_id, "category_id": int(category), "segmentation": rle}
        if with_scores:
            record["score"] = float(score)
        else:
            record |= {"area": int(mask.sum()), "bbox": box}
        records.append(record)
    return records


class CocoResults(pl.Callback):
    """Collects the instances that validation scores and writes the two COCO files at its end.

    It reads the ``instances`` and ``true_instances`` that ``DeepSpectralClustering.validation_step``
    returns when it scores instances (``model.score_instances``); one process only. The results file
    holds the instances that pass ``thresholds`` (default: all, so that COCOeval sees what mask AP
    scored); ``dropped`` counts the others.
    """

    def __init__(
        self,
        output_dir: str | Path,
        class_names: Sequence[str] | None = None,
        dataset: Any = None,
        thresholds: InstanceThresholds | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.thresholds = thresholds or InstanceThresholds()
        self.dropped = DroppedInstances(self.thresholds)  # what the file leaves out
        self.class_names = list(class_names) if class_names is not None else None
        self.dataset = dataset  # a COCO data set (dsc.data.COCOInstances): its own image and category ids
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.predictions: list[dict[str, Any]] = []
        self.per_class = False

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            raise InvalidInputError("export=coco runs in one process: set trainer.devices=1")
        if not pl_module.score_instances:
            raise InvalidInputError("export=coco needs the model's instance scoring (model.score_instances)")
        self.per_class = "classes" in pl_module.heads
        self.images, self.annotations, self.predictions = [], [], []
        self.dropped = DroppedInstances(self.thresholds)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        height, width = batch["instances"].shape[-2:]
        image_area = batch.get("image_area")
        for index, (predicted, true) in enumerate(
            zip(outputs["instances"], outputs["true_instances"], strict=True)
        ):
            position = len(self.images)
            image_id = position + 1 if self.dataset is None else self.dataset.image_ids[position]
            size = image_size(None if image_area is None else image_area[index], height, width)
            self.images.append({"id": image_id, "height": size[0], "width": size[1]})
            coco_ids = self.per_class and self.dataset is not None
            categories = self.dataset.category_of_class if coco_ids else None
            if not self.per_class:
                predicted, true = predicted.class_agnostic(), true.class_agnostic()
            for record in instance_records(true, image_id, size, category_ids=categories):
                self.annotations.append({**record, "id": len(self.annotations) + 1, "iscrowd": 0})
            predicted = self.dropped.apply(predicted)
            self.predictions.extend(instance_records(predicted, image_id, size, True, categories))

    def categories(self) -> list[dict[str, Any]]:
        if not self.per_class:
            return [{"id": OBJECT, "name": "object"}]
        if self.dataset is not None:
            return self.dataset.categories
        if self.class_names is None:
            ids = sorted({a["category_id"] for a in self.annotations + self.predictions})
            return [{"id": c, "name": f"class {c}"} for c in ids]
        return [{"id": c, "name": name} for c, name in enumerate(self.class_names) if c > 0]

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        ground_truth = {
            "info": {"description": "ground truth of the split dsc.evaluate scored"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories(),
        }
        write_text(self.output_dir / GROUND_TRUTH_FILE, json.dumps(ground_truth))
        write_text(self.output_dir / PREDICTIONS_FILE, json.dumps(self.predictions))


def coco_mask_ap(output_dir: str | Path) -> float:
    """pycocotools' ``COCOeval(iouType="segm")`` mask AP of the two files in ``output_dir`` (−1
    without any detection, COCOeval's value; pycocotools cannot load an empty results file)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    predictions = json.loads((Path(output_dir) / PREDICTIONS_FILE).read_text())
    if not predictions:
        return -1.0
    ground_truth = COCO(str(Path(output_dir) / GROUND_TRUTH_FILE))
    evaluation = COCOeval(ground_truth, ground_truth.loadRes(predictions), iouType="segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[0])


class CocoPredictionFile:
    """``dsc.predict``'s COCO output: ``predictions_coco.json`` (COCO's results format) and
    ``images_coco.json`` (the images and categories those results refer to, a COCO annotation
    file without annotations, which pycocotools' ``COCO`` loads; ``loadRes`` takes the results).

    Ids: without ``image_ids``, images are numbered 1, 2, … in the order they are added and
    categories are dsc's class ids (1 "object" for a model without a class head); with a COCO
    data set (``image_ids``: file name → id, ``category_ids[c]``: the COCO id of class c) they are
    the data set's own, so the file can be submitted as it is.
    """

    reads_instances = True
    reads_features = False

    def __init__(
        self,
        output: Path,
        categories: list[dict[str, Any]],
        image_ids: dict[str, int] | None = None,
        category_ids: Sequence[int] | None = None,
    ) -> None:
        self.output = Path(output)
        self.categories = categories
        self.image_ids = image_ids
        self.category_ids = category_ids
        self.images: list[dict[str, Any]] = []
        self.predictions: list[dict[str, Any]] = []

    def planned(self, stems: Sequence[str]) -> list[Path]:
        return [self.output / PREDICTIONS_FILE, self.output / IMAGES_FILE]

    def add(
        self,
        source: Path,
        stem: str,
        image: Tensor,
        labels: Tensor,
        instances: Instances,
        features: Tensor | None = None,
    ) -> None:
        height, width = labels.shape[-2:]
        image_id = len(self.images) + 1 if self.image_ids is None else self.image_ids[source.name]
        self.images.append({"id": image_id, "file_name": source.name, "height": height, "width": width})
        records = instance_records(instances, image_id, (height, width), True, self.category_ids)
        self.predictions.extend(records)

    def finish(self) -> None:
        images = {"images": self.images, "annotations": [], "categories": self.categories}
        write_text(self.output / IMAGES_FILE, json.dumps(images))
        write_text(self.output / PREDICTIONS_FILE, json.dumps(self.predictions))
