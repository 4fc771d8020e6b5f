"""``format=png`` of ``dsc.predict``: per image a palette PNG of instance ids and an overlay picture."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dsc.contracts import InvalidInputError
from dsc.data.statistics import TrainingImages
from dsc.instances import Instances, InstanceThresholds
from dsc.ops.projection import EmbeddingProjection
from dsc.outputs.files import save_image
from dsc.outputs.pictures import (
    caption_segments,
    embedding_rgb,
    legend,
    order_by_size,
    overlay,
    panel_scale,
    titled,
    to_uint8_image,
    upscale,
    voc_palette,
)

log = logging.getLogger(__name__)


def output_files(stem: str, folder: Path) -> list[Path]:
    """The files ``write_prediction`` writes for one image."""
    return [folder / f"{stem}.png", folder / f"{stem}_overlay.png"]


class PaletteMasks:
    """``format=png``: per image ``<stem>.png`` (the whole partition: palette-mode segment ids, or
    16-bit ids beyond 255 segments) and ``<stem>_overlay.png`` (the instances that pass the command's
    thresholds tinted and captioned with their class name, or "object", and score; with
    ``side_by_side`` the input beside it, a legend beneath, and a title above an input far from the
    training images); with ``embedding``, also ``<stem>_embedding.png``, the embedding view at least
    256 pixels high through the checkpoint's projection (``projection``; without one, each image's
    own principal directions).

    ``class_names``: class 0 first; ``training_images``: what the model was trained on, or None;
    ``thresholds``: those the instances passed, for the legend."""

    reads_instances = True

    def __init__(
        self,
        output: Path,
        side_by_side: bool = True,
        embedding: bool = False,
        class_names: Sequence[str] = ("background", "object"),
        projection: EmbeddingProjection | None = None,
        training_images: TrainingImages | None = None,
        thresholds: InstanceThresholds | None = None,
    ) -> None:
        self.output = output
        self.side_by_side = side_by_side
        self.embedding = embedding
        self.reads_features = embedding
        self.class_names = list(class_names)
        self.projection = projection
        self.training_images = training_images
        self.thresholds = thresholds or InstanceThresholds()

    def planned(self, stems: Sequence[str]) -> list[Path]:
        extra = [self.output / f"{stem}_embedding.png" for stem in stems] if self.embedding else []
        return [path for stem in stems for path in output_files(stem, self.output)] + extra

    def add(
        self,
        source: Path,
        stem: str,
        image: Tensor,
        labels: Tensor,
        instances: Instances | None,
        features: Tensor | None = None,
    ) -> None:
        far = None if self.training_images is None else self.training_images.far(image)
        title = None
        if far is not None:
            title = f"outside the training data ({self.training_images.name}): {far}"
        write_prediction(image, labels, self.output, stem, self.side_by_side, instances, self.class_names,
                         self._legend_note(instances), title)  # fmt: skip
        if self.embedding and features is not None:
            save_image(Image.fromarray(self.embedding_view(features)), self.output / f"{stem}_embedding.png")

    def embedding_view(self, features: Tensor) -> np.ndarray:
        """The (d, H, W) embedding as RGB, at least 256 pixels high, under a title saying which
        projection coloured it."""
        if self.projection is not None and len(self.projection.mean) == len(features):
            picture, how = self.projection.rgb(features), "fixed PCA"
        else:
            picture, how = embedding_rgb(features), "own PCA"
        return titled(upscale(picture, panel_scale(features.shape[-2])), f"embedding ({how})")

    def _legend_note(self, instances: Instances | None) -> str:
        if instances is None:
            return ""
        kept = f"{len(instances)} instance{'s' * (len(instances) != 1)}"
        if self.thresholds.keeps_all:
            return kept
        return f"{kept} with score ≥ {self.thresholds.min_score:g} and ≥ {self.thresholds.min_size} px"

    def finish(self) -> None:
        """Every file is written by ``add``."""


OVERLAY_ALPHA = 0.7  # captioned instances: their tint close to the legend's swatch


def by_size(instances: Instances) -> Instances:
    """The instances, the largest mask first (ties in their order)."""
    sizes = instances.masks.flatten(1).sum(dim=1)
    return instances.select(torch.argsort(sizes, descending=True, stable=True))


def instance_map(instances: Instances, height: int, width: int) -> Tensor:
    """(H, W) int64: 0 outside every instance, k + 1 on the k-th instance's mask."""
    ids = torch.zeros(height, width, dtype=torch.int64, device=instances.masks.device)
    for rank, mask in enumerate(instances.masks, start=1):
        ids[mask] = rank
    return ids


def captions(instances: Instances, class_names: Sequence[str]) -> list[str]:
    """``<class name> <score>`` per instance (``class c`` beyond the names)."""
    return [
        f"{class_names[c] if c < len(class_names) else f'class {c}'} {score:.2f}"
        for c, score in zip(instances.classes.tolist(), instances.scores.tolist(), strict=True)
    ]


def write_prediction(
    image: torch.Tensor,
    labels: torch.Tensor,
    folder: Path,
    stem: str,
    side_by_side: bool = False,
    instances: Instances | None = None,
    class_names: Sequence[str] = ("background", "object"),
    note: str = "",
    title: str | None = None,
) -> None:
    """Save ``stem.png`` (palette-mode segment ids, or 16-bit ids beyond 255 segments) and
    ``stem_overlay.png`` for one image: the overlay at the image's size, or with ``side_by_side``
    the input beside it, small images upscaled to ``PANEL_SIZE`` pixels high, with a legend
    beneath (each instance's colour, class and score, then ``note``) and ``title`` above, if any.
    The overlay tints ``instances`` (each instance its colour and caption, the largest first, the
    rest untinted), or without them every segment."""
    ordered = order_by_size(labels)
    mask_file, overlay_file = output_files(stem, folder)
    segments = int(ordered.max()) + 1
    if segments <= 255:  # ids 0..254: 255 is VOC's void colour
        mask = Image.fromarray(ordered.byte().cpu().numpy(), mode="P")
        mask.putpalette(voc_palette().flatten().tolist())
    else:
        if segments > 65536:
            raise InvalidInputError(f"{stem}: {segments} segments, more than a 16-bit PNG can number")
        log.warning(
            "%s has %d segments, more than a palette PNG holds (255): writing %s as 16-bit instance ids",
            stem,
            segments,
            mask_file.name,
        )
        mask = Image.fromarray(ordered.cpu().numpy().astype(np.uint16))
    save_image(mask, mask_file)
    texts: list[str] = []
    shown = ordered
    if instances is not None:
        instances = by_size(instances)
        shown, texts = (
            instance_map(instances, *labels.shape[-2:]).to(ordered.device),
            captions(instances, class_names),
        )
    if side_by_side:  # small images upscaled (nearest neighbour) to PANEL_SIZE pixels high
        factor = panel_scale(image.shape[-2])
        image, shown = upscale(image, factor), upscale(shown, factor)
    picture = overlay(image, shown, alpha=OVERLAY_ALPHA if instances is not None else 0.55)
    if texts:
        picture = caption_segments(picture, shown.cpu().numpy(), texts)
    if side_by_side:
        gap = np.full((picture.shape[0], 4, 3), 255, dtype=np.uint8)
        picture = np.concatenate([to_uint8_image(image), gap, picture], axis=1)
        if instances is not None:
            picture = np.concatenate([picture, legend(texts, picture.shape[1], note)], axis=0)
        if title is not None:
            picture = titled(picture, title)
    save_image(Image.fromarray(picture), overlay_file)
