"""Pictures of partitions and embeddings: uint8 RGB arrays, pure functions of tensors."""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from dsc.labels import VOID


def voc_palette() -> np.ndarray:
    """PASCAL VOC's 256-colour palette (index 0 black, 255 the void colour), (256, 3) uint8."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    palette[VOID] = (224, 224, 192)
    return palette


def order_by_size(labels: Tensor) -> Tensor:
    """Renumber a (H, W) partition so that 0 is its largest segment, 1 the next, and so on (the
    largest segment is usually background, which VOC numbers 0). Ties keep the lower label first."""
    flat = labels.flatten().long()
    _, inverse, sizes = torch.unique(flat, return_inverse=True, return_counts=True)
    rank = torch.empty_like(sizes)
    rank[torch.argsort(-sizes, stable=True)] = torch.arange(len(sizes), device=sizes.device)
    return rank[inverse].view_as(labels)


def to_uint8_image(image: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] → (H, W, 3) uint8."""
    return (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def overlay(image: Tensor, labels: Tensor, alpha: float = 0.55) -> np.ndarray:
    """Blend palette colours of a (H, W) partition over a (3, H, W) image in [0, 1], with the
    segment boundaries drawn in white. Label 0 (background) is left untinted. → (H, W, 3) uint8."""
    rgb = to_uint8_image(image).astype(np.float32)
    ids = labels.detach().cpu().long().numpy()
    colours = voc_palette()[np.where(ids == VOID, VOID, ids % 255)].astype(np.float32)
    tinted = ids != 0
    rgb[tinted] = (1 - alpha) * rgb[tinted] + alpha * colours[tinted]
    boundary = np.zeros_like(ids, dtype=bool)
    boundary[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    boundary[1:, :] |= ids[1:, :] != ids[:-1, :]
    rgb[boundary] = 255
    return rgb.round().astype(np.uint8)


def embedding_rgb(embeddings: Tensor) -> np.ndarray:
    """A (d, H, W) embedding seen through its top three principal directions, each stretched to
    [0, 255]: pixels of one cluster share a colour. → (H, W, 3) uint8 (d < 3 pads with black)."""
    dim, height, width = embeddings.shape
    rows = embeddings.detach().double().flatten(1).T
    rows = rows - rows.mean(dim=0)
    _, eigenvectors = torch.linalg.eigh(rows.T @ rows)
    projected = rows @ eigenvectors[:, -min(3, dim) :].flip(-1)  # (N, ≤3), largest first
    low, high = projected.amin(dim=0), projected.amax(dim=0)
    scaled = (projected - low) / (high - low).clamp(min=1e-12)
    rgb = torch.zeros(height * width, 3, dtype=torch.float64)
    rgb[:, : scaled.shape[1]] = scaled
    return (rgb * 255).round().byte().view(height, width, 3).cpu().numpy()


PANEL_SIZE = 256  # pictures' panels are upscaled (nearest neighbour) to at least this many pixels high
TITLE_HEIGHT = 30  # a title strip: 20-pixel text, legible on a 256-pixel panel and in thumbnails
TITLE_FONT_SIZE = 20


def match_to_truth(preds: Tensor, truth: Tensor) -> Tensor:
    """Renumber a (H, W) predicted partition for display beside the (H, W) ground truth: a segment
    mostly on background becomes 0 (untinted); the others take the id of the true instance they
    overlap most, one segment per instance, larger overlaps first, so matching objects get matching
    colours; segments left over get ids after the largest true id. Void truth pixels do not vote."""
    pred = preds.detach().cpu().long().numpy().ravel()
    true = truth.detach().cpu().long().numpy().ravel()
    voting = true != VOID
    span = int(true[voting].max()) + 1 if voting.any() else 1
    keys, overlaps = np.unique(pred[voting] * span + true[voting], return_counts=True)  # (segment, instance)
    pairs = np.stack([keys // span, keys % span])
    segments, segment_of_pixel = np.unique(pred, return_inverse=True)
    colour = {}
    majority = {}
    for (segment, instance), overlap in zip(pairs.T.tolist(), overlaps.tolist(), strict=True):
        if overlap > majority.get(segment, (0, -1))[0]:
            majority[segment] = (overlap, instance)
    taken = set()
    for index in np.argsort(-overlaps, kind="stable"):
        segment, instance = pairs[:, index].tolist()
        if segment in colour or majority[segment][1] == 0:
            continue
        if instance != 0 and instance not in taken:
            colour[segment] = instance
            taken.add(instance)
    next_id = int(true[voting].max()) + 1 if voting.any() else 1
    for segment in segments.tolist():
        if segment in majority and majority[segment][1] == 0:
            colour[segment] = 0
        elif segment not in colour:
            colour[segment] = next_id
            next_id += 1
    colours = np.array([colour[segment] for segment in segments.tolist()], dtype=np.int64)
    return torch.from_numpy(colours[segment_of_pixel].reshape(tuple(preds.shape)))


def upscale(array: np.ndarray | Tensor, factor: int) -> np.ndarray | Tensor:
    """Nearest-neighbour upscaling of the last two (tensor) or first two (array) axes by ``factor``."""
    if factor == 1:
        return array
    if isinstance(array, Tensor):
        return array.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return array.repeat(factor, axis=0).repeat(factor, axis=1)


def titled(picture: np.ndarray, title: str) -> np.ndarray:
    """A (H, W, 3) uint8 picture with ``title`` written in a dark strip above it."""
    strip = Image.new("RGB", (picture.shape[1], TITLE_HEIGHT), (32, 32, 32))
    ImageDraw.Draw(strip).text((6, 4), title, fill=(255, 255, 255), font=font(TITLE_FONT_SIZE))
    return np.concatenate([np.asarray(strip), picture], axis=0)


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own scalable font at ``size`` pixels (its bitmap font where Pillow lacks FreeType)."""
    return ImageFont.load_default(size=size)


def panel_scale(height: int) -> int:
    """The nearest-neighbour upscaling factor that makes a picture ``height`` pixels high at least
    ``PANEL_SIZE`` pixels high (1 for pictures that are already)."""
    return max(1, -(-PANEL_SIZE // height))


def comparison_panels(
    image: Tensor, truth: Tensor, preds: Tensor, features: Tensor, matched: Tensor | None = None
) -> dict[str, np.ndarray]:
    """The pictures of one validation image, upscaled by ``panel_scale``: the image, the ground
    truth's instances, the predicted segments coloured like the true instances they match
    (``match_to_truth``; pass ``matched`` when it is computed already), both with boundaries, and
    the embedding (or class probabilities) through its top three principal directions. Inputs
    are (3, H, W), (H, W), (H, W) and (d, H, W); each picture is (H', W', 3) uint8."""
    factor = panel_scale(image.shape[-2])
    big_image, big_truth = upscale(image, factor), upscale(truth, factor)
    matched = upscale(match_to_truth(preds, truth) if matched is None else matched, factor)
    return {
        "image": to_uint8_image(big_image),
        "ground truth": overlay(big_image, big_truth),
        "prediction": overlay(big_image, matched),
        "embedding": upscale(embedding_rgb(features), factor),
    }


def titled_grid(pictures: dict[str, np.ndarray], columns: int = 2) -> np.ndarray:
    """The (equally sized) pictures in rows of ``columns``, each under its name, with 4-pixel white
    gaps: two columns keep a panel of four 256-pixel pictures legible as a thumbnail."""
    panels = [titled(picture, name) for name, picture in pictures.items()]
    height, width = panels[0].shape[:2]
    rows = -(-len(panels) // columns)
    grid = np.full((rows * height + (rows - 1) * 4, columns * width + (columns - 1) * 4, 3), 255, np.uint8)
    for index, panel in enumerate(panels):
        top, left = (index // columns) * (height + 4), (index % columns) * (width + 4)
        grid[top : top + height, left : left + width] = panel
    return grid
