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
from dsc.instances import Instances
from dsc.outputs.files import save_image
from dsc.outputs.pictures import (
    embedding_rgb,
    order_by_size,
    overlay,
    panel_scale,
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
    thresholds tinted, the input beside it with ``side_by_side``, else the overlay alone); with
    ``embedding``, also ``<stem>_embedding.png`` (the embedding's top three principal directions as RGB)."""

    reads_instances = True

    def __init__(self, output: Path, side_by_side: bool = True, embedding: bool = False) -> None:
        self.output = output
        self.side_by_side = side_by_side
        self.embedding = embedding
        self.reads_features = embedding

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
        write_prediction(image, labels, self.output, stem, self.side_by_side, instances)
        if self.embedding and features is not None:
            save_image(Image.fromarray(embedding_rgb(features)), self.output / f"{stem}_embedding.png")

    def finish(self) -> None:
        """Every file is written by ``add``."""


def instance_map(instances: Instances, height: int, width: int) -> Tensor:
    """(H, W) int64: 0 outside every instance, k + 1 on the k-th instance's mask (the largest first)."""
    ids = torch.zeros(height, width, dtype=torch.int64, device=instances.masks.device)
    sizes = instances.masks.flatten(1).sum(dim=1)
    for rank, index in enumerate(torch.argsort(sizes, descending=True, stable=True).tolist(), start=1):
        ids[instances.masks[index]] = rank
    return ids


def write_prediction(
    image: torch.Tensor,
    labels: torch.Tensor,
    folder: Path,
    stem: str,
    side_by_side: bool = False,
    instances: Instances | None = None,
) -> None:
    """Save ``stem.png`` (palette-mode segment ids, or 16-bit ids beyond 255 segments) and
    ``stem_overlay.png`` for one image: the overlay at the image's size, or with ``side_by_side``
    the input beside it, small images upscaled to ``PANEL_SIZE`` pixels high. The overlay tints
    ``instances`` (each instance its colour, the rest untinted), or without them every segment."""
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
    shown = ordered if instances is None else instance_map(instances, *labels.shape[-2:]).to(ordered.device)
    if side_by_side:  # small images upscaled (nearest neighbour) to PANEL_SIZE pixels high
        factor = panel_scale(image.shape[-2])
        image, shown = upscale(image, factor), upscale(shown, factor)
    picture = overlay(image, shown)
    if side_by_side:
        gap = np.full((picture.shape[0], 4, 3), 255, dtype=np.uint8)
        picture = np.concatenate([to_uint8_image(image), gap, picture], axis=1)
    save_image(Image.fromarray(picture), overlay_file)
