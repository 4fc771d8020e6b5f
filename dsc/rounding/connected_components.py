"""The baseline every grouping method is compared with: connected components of a semantic
segmentation. Each 4-connected region of one class is a segment (SciPy's ``ndimage.label``)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from dsc.contracts import Head, NetworkOutputs
from dsc.labels import VOID
from dsc.rounding.postprocess import relabel_consecutive


def connected_components(classes: Tensor, image_area: Tensor | None = None, min_size: int = 0) -> Tensor:
    """(B, H, W) class map → (B, H, W) int64 labels 0..k−1 per image, one per 4-connected region
    of a single class; −1 outside ``image_area`` ((B, H, W) bool, False on a batch's padding).
    min_size: pixels of regions smaller than this join the nearest larger region (0: off)."""
    if classes.dim() != 3:
        raise ValueError(f"expected a (B, H, W) class map, got shape {tuple(classes.shape)}")
    class_maps = classes.detach().cpu().numpy()
    inside = np.ones(class_maps.shape, bool) if image_area is None else image_area.cpu().numpy()
    labels = np.full(class_maps.shape, -1, dtype=np.int64)
    for image, (class_map, area) in enumerate(zip(class_maps, inside, strict=True)):
        count = 0
        for value in np.unique(class_map[area]):
            regions, num_regions = ndimage.label((class_map == value) & area)
            labels[image][regions > 0] = regions[regions > 0] - 1 + count
            count += num_regions
        if min_size > 1 and count:
            labels[image] = _merge_small_regions(labels[image], min_size)
    merged = torch.from_numpy(labels)
    if min_size > 1:  # merging left gaps in the numbering
        merged = relabel_consecutive(merged.flatten(1)).view_as(merged)
    return merged.to(classes.device)


def _merge_small_regions(labels: np.ndarray, min_size: int) -> np.ndarray:
    """(H, W) labels (−1 outside the image) with regions under ``min_size`` pixels given the label of
    the nearest pixel of a larger region (the numbering keeps its gaps)."""
    sizes = np.bincount(labels[labels >= 0])
    small = (labels >= 0) & (sizes[np.maximum(labels, 0)] < min_size)
    if not small.any() or small.sum() == (labels >= 0).sum():
        return labels
    replace = small | (labels < 0)  # take the label of the nearest pixel outside these
    nearest = ndimage.distance_transform_edt(replace, return_distances=False, return_indices=True)
    return np.where(small, labels[tuple(nearest)], labels)


def fill_void(classes: Tensor, void: int = VOID) -> Tensor:
    """(B, H, W) class map with every ``void`` pixel given the class of its nearest non-void pixel
    (Euclidean; what a perfect semantic segmenter predicts there). All-void images stay as they are."""
    filled = classes.detach().cpu().numpy().copy()
    for class_map in filled:
        is_void = class_map == void
        if is_void.any() and not is_void.all():
            nearest = ndimage.distance_transform_edt(is_void, return_distances=False, return_indices=True)
            class_map[...] = class_map[tuple(nearest)]
    return torch.from_numpy(filled).to(classes.device)


class ConnectedComponents:
    """``rounding=connected_components``: connected components of the class head's predicted classes
    (a ``dsc.contracts.Partitioner`` for models with a class head: cross-entropy or joint).
    min_size: regions under this many pixels join the nearest larger region (0: off)."""

    heads: frozenset[Head] = frozenset({"classes"})

    def __init__(self, min_size: int = 0) -> None:
        if min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {min_size}")
        self.min_size = min_size

    def partition(
        self,
        outputs: NetworkOutputs,
        generator: torch.Generator | None = None,
        image_area: Tensor | None = None,
    ) -> Tensor:
        return connected_components(outputs.predicted_classes, image_area, self.min_size)
