"""Pictures of partitions and embeddings: uint8 RGB arrays, pure functions of tensors."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from dsc.labels import VOID
from dsc.ops.projection import EmbeddingProjection


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
    """A (d, H, W) embedding seen through its own top three principal directions, each stretched
    to [0, 255]: pixels of one cluster share a colour, but colours differ from image to image (an
    ``EmbeddingProjection`` fitted once does not). → (H, W, 3) uint8 (d < 3 pads with black)."""
    return EmbeddingProjection.fit(embeddings.flatten(1).T).rgb(embeddings)


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
    """A (H, W, 3) uint8 picture with ``title`` written in a dark strip above it: 20-pixel text,
    wrapped onto more lines where the picture is too narrow for it."""
    title_font = font(TITLE_FONT_SIZE)
    width = picture.shape[1]
    lines: list[str] = []
    for word in drawable(title).split(" "):
        if lines and title_font.getlength(f"{lines[-1]} {word}") <= width - 12:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    strip = Image.new("RGB", (width, TITLE_HEIGHT + (len(lines) - 1) * (TITLE_FONT_SIZE + 4)), (32, 32, 32))
    draw = ImageDraw.Draw(strip)
    for number, line in enumerate(lines):
        draw.text((6, 4 + number * (TITLE_FONT_SIZE + 4)), line, fill=(255, 255, 255), font=title_font)
    return np.concatenate([np.asarray(strip), picture], axis=0)


# Characters Pillow's own font lacks, written as it can draw them.
_UNDRAWABLE = str.maketrans({"×": "x", "≥": ">=", "≤": "<=", "–": "-", "—": "-"})


def drawable(text: str) -> str:
    """``text`` with the characters Pillow's own font lacks replaced (``×`` → ``x``, ``≥`` → ``>=``, …)."""
    return text.translate(_UNDRAWABLE)


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


LABEL_FONT_SIZE = 14
MAX_LABELS = 20  # instances captioned on a picture and in its legend, the largest first


def segment_colours(count: int) -> np.ndarray:
    """The overlay colours of segments 1 … ``count`` (``overlay``'s palette), (count, 3) uint8."""
    return voc_palette()[np.arange(1, count + 1) % 255]


def caption_segments(picture: np.ndarray, ids: np.ndarray, captions: Sequence[str]) -> np.ndarray:
    """Write ``captions[k - 1]`` on segment k of the (H, W) ids over the (H, W, 3) uint8 picture, in a
    dark box at the segment's pixel nearest its centroid (kept inside the picture), for segments
    1 … ``MAX_LABELS``. → a new (H, W, 3) uint8 picture."""
    canvas = Image.fromarray(picture)
    draw = ImageDraw.Draw(canvas)
    label_font = font(LABEL_FONT_SIZE)
    height, width = ids.shape
    placed: list[tuple[int, int, int, int]] = []
    for segment, caption in enumerate(map(drawable, captions[:MAX_LABELS]), start=1):
        rows, columns = np.nonzero(ids == segment)
        if len(rows) == 0:
            continue
        nearest = np.argmin((rows - rows.mean()) ** 2 + (columns - columns.mean()) ** 2)
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=label_font)
        box_width, box_height = right - left + 6, bottom - top + 4
        x = int(np.clip(columns[nearest] - box_width // 2, 0, max(0, width - box_width)))
        y = int(np.clip(rows[nearest] - box_height // 2, 0, max(0, height - box_height)))
        for other in placed:  # below any caption it would cover (larger segments were placed first)
            if x < other[2] and other[0] < x + box_width and y < other[3] and other[1] < y + box_height:
                y = other[3] + 1 if other[3] + 1 + box_height <= height else max(0, other[1] - box_height - 1)
        placed.append((x, y, x + box_width, y + box_height))
        draw.rectangle((x, y, x + box_width, y + box_height), fill=(24, 24, 24))
        draw.text((x + 3 - left, y + 2 - top), caption, fill=(255, 255, 255), font=label_font)
    return np.asarray(canvas).copy()


def legend(captions: Sequence[str], width: int, note: str = "") -> np.ndarray:
    """A white strip ``width`` pixels wide listing each caption beside its segment's colour
    swatch (segments 1 … ``MAX_LABELS``; ``… and N more`` after them), then ``note``; with no
    captions, only the note. → (H, width, 3) uint8."""
    label_font = font(LABEL_FONT_SIZE)
    shown = [drawable(caption) for caption in captions[:MAX_LABELS]]
    entries = [*shown, f"… and {len(captions) - len(shown)} more"] if len(captions) > len(shown) else shown
    column_width = 190
    columns = max(1, (width - 8) // column_width)
    rows = -(-len(entries) // columns) if entries else 0
    line = LABEL_FONT_SIZE + 8
    height = 8 + rows * line + (line if note else 0)
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    colours = segment_colours(len(shown))
    for index, entry in enumerate(entries):
        x, y = 8 + (index % columns) * column_width, 6 + (index // columns) * line
        if index < len(shown):
            swatch = (x, y + 2, x + LABEL_FONT_SIZE, y + 2 + LABEL_FONT_SIZE)
            draw.rectangle(swatch, fill=tuple(colours[index].tolist()), outline=(0, 0, 0))
        draw.text((x + LABEL_FONT_SIZE + 6, y + 1), entry, fill=(0, 0, 0), font=label_font)
    if note:
        draw.text((8, 6 + rows * line), drawable(note), fill=(80, 80, 80), font=label_font)
    return np.asarray(strip).copy()
