"""Instances from a partition: per image, a list of masks with a class and a confidence score, the
form in which mask AP and panoptic quality judge instance segmentation.

Predicted instances (``predicted_instances``) are the segments of a rounded partition:

* **class**: the class with the largest mean probability over the segment's pixels; segments whose
  class is background (0) are not instances. A network without a class head gives class-agnostic
  instances of one class, 1 ("object"), and its background is, per image, the segment that covers
  the most pixels of the image's border (ties: the lower label).
* **score**: the segment's mean class probability of its class times its *agreement*, the mean of
  v_i·μ over its unit embeddings v_i, μ their unit mean direction (= ‖Σ v_i‖ / n, in [0, 1]: 1 when
  all point one way). Without embeddings (a cross-entropy model) the score is the class probability
  alone; without a class head, the agreement alone.

Masks leave out void pixels (``valid`` False) so that matching ignores them; a segment that is void
only is dropped. All statistics are batched tensor work on the outputs' device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dsc.contracts import NetworkOutputs
from dsc.instances.instances import OBJECT, Instances, no_instances
from dsc.labels import BACKGROUND, VOID


def _segment_sums(keys: Tensor, values: Tensor, num_keys: int) -> Tensor:
    """Sums of (P, c) ``values`` rows per key in 0..num_keys−1 → (num_keys, c) float32."""
    sums = torch.zeros(num_keys, values.shape[1], dtype=torch.float32, device=values.device)
    return sums.index_add_(0, keys, values.float())


def _border(image_area: Tensor) -> Tensor:
    """(B, H, W) bool: pixels of the image area with a 4-neighbour outside it or on the frame."""
    outside = F.pad((~image_area).float().unsqueeze(1), (1, 1, 1, 1), value=1.0)
    neighbour_outside = F.max_pool2d(outside, 3, stride=1).squeeze(1) > 0  # includes diagonals
    return image_area & neighbour_outside


def predicted_instances(
    labels: Tensor,
    outputs: NetworkOutputs,
    valid: Tensor | None = None,
    image_area: Tensor | None = None,
) -> list[Instances]:
    """Instances of every image of a batch (rules in the module docstring).

    labels: (B, H, W) int64 segment labels 0..k−1 per image, −1 on padding (a ``Partitioner``'s output).
    outputs: the network's heads for the batch (embeddings and/or class scores, (B, ·, H, W)).
    valid: optional (B, H, W) bool, False on void pixels, which the masks leave out.
    image_area: optional (B, H, W) bool, False on a batch's padding (for the border rule).
    """
    batch, height, width = labels.shape
    device = labels.device
    num_labels = int(labels.max()) + 1 if labels.numel() else 0
    if num_labels <= 0:
        return [no_instances(height, width, device) for _ in range(batch)]
    inside = labels >= 0
    image_index = torch.arange(batch, device=device).view(batch, 1, 1).expand_as(labels)
    keys = (image_index * num_labels + labels)[inside]  # (P,) segment keys b·k + label
    num_keys = batch * num_labels
    sizes = torch.bincount(keys, minlength=num_keys).float()

    score = torch.ones(num_keys, device=device)
    if outputs.raw_embeddings is not None:
        embeddings = outputs.embeddings.detach().permute(0, 2, 3, 1)[inside]  # (P, d)
        sums = _segment_sums(keys, embeddings, num_keys)
        score = score * sums.norm(dim=1) / sizes.clamp(min=1)  # agreement ‖Σ v‖ / n
    if outputs.class_logits is not None:
        probabilities = outputs.class_probabilities.detach().permute(0, 2, 3, 1)[inside]  # (P, C)
        mean_probabilities = _segment_sums(keys, probabilities, num_keys) / sizes.clamp(min=1).unsqueeze(1)
        class_probability, classes = mean_probabilities.max(dim=1)
        score = score * class_probability
        is_instance = (sizes > 0) & (classes != BACKGROUND)
    else:
        area = inside if image_area is None else inside & image_area.to(device)
        border_keys = (image_index * num_labels + labels)[_border(area)]
        border_pixels = torch.bincount(border_keys, minlength=num_keys).view(batch, num_labels)
        background = border_pixels.argmax(dim=1) + torch.arange(batch, device=device) * num_labels
        classes = torch.full((num_keys,), OBJECT, dtype=torch.int64, device=device)
        is_instance = sizes > 0
        is_instance[background[border_pixels.amax(dim=1) > 0]] = False

    is_instance = is_instance.view(batch, num_labels)
    classes, score = classes.view(batch, num_labels), score.clamp(0, 1).view(batch, num_labels)
    segment_ids = torch.arange(num_labels, device=device)
    instances = []
    for image in range(batch):
        ids = segment_ids[is_instance[image]]
        masks = labels[image].unsqueeze(0) == ids.view(-1, 1, 1)
        if valid is not None:
            masks &= valid[image].to(device)
        keep = masks.flatten(1).any(dim=1)
        instances.append(Instances(masks[keep], classes[image, ids][keep], score[image, ids][keep]))
    return instances


def true_instances(instances: Tensor, classes: Tensor, void: int = VOID) -> list[Instances]:
    """The ground truth's instances: (B, H, W) instance ids (0 background, ``void`` ignored, other
    values instances) and the class map → per image masks, classes (each instance's most frequent
    non-void class; 0 if it has none) and scores 1."""
    batch, height, width = instances.shape
    device = instances.device
    ids = instances.long()
    is_object = (ids != BACKGROUND) & (ids != void) & (ids >= 0)
    num_ids = int(ids[is_object].max()) + 1 if is_object.any() else 0
    if num_ids == 0:
        return [no_instances(height, width, device) for _ in range(batch)]
    class_ids = classes.long().masked_fill(classes.long() == void, 0)
    num_classes = int(class_ids.max()) + 1
    image_index = torch.arange(batch, device=device).view(batch, 1, 1).expand_as(ids)
    keys = ((image_index * num_ids + ids) * num_classes + class_ids)[is_object]
    votes = torch.bincount(keys, minlength=batch * num_ids * num_classes).view(batch, num_ids, num_classes)
    present = votes.sum(dim=2) > 0
    votes[..., BACKGROUND] = votes[..., BACKGROUND].masked_fill(votes[..., 1:].sum(dim=2) > 0, 0)
    majority = votes.argmax(dim=2)
    result = []
    for image in range(batch):
        image_ids = torch.nonzero(present[image]).flatten()
        masks = ids[image].unsqueeze(0) == image_ids.view(-1, 1, 1)
        scores = torch.ones(len(image_ids), device=device)
        result.append(Instances(masks, majority[image, image_ids], scores))
    return result
