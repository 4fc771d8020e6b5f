"""Built-in synthetic instance data in PASCAL VOC's conventions, generated from a seed.

Each image holds disks, squares and triangles, several of one class, placed so that they often
touch or overlap (later objects occlude earlier ones). Label maps follow VOC: uint8 instance ids
0 (background), 1..k, and 255 (void) on a band along every boundary; a class map beside it
(0 background, 1 disk, 2 square, 3 triangle, 255 void).

Every knob of ``ShapesStyle`` is a key of ``data.train.style`` (``conf/data/shapes.yaml``), which the
validation set follows.
Its defaults are the quick ``data=shapes``: 3–5 objects, each with its own colour, a shading
gradient and a dark outline, so instances are separable from the pixels, while the semantic
(class) partition merges same-class instances and scores clearly lower pairwise precision.
``data=shapes_hard`` turns the knobs up: 1–30 objects of widely varied scale, thin (stretched)
shapes, colours that repeat, striped objects on a textured background and faint outlines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dsc.contracts import InvalidInputError
from dsc.labels import VOID

CLASS_NAMES = ("background", "disk", "square", "triangle")
# Well separated colours, so that instances in one image never look alike (colours="distinct").
PALETTE = np.array(
    [
        [0.90, 0.10, 0.10],
        [0.10, 0.75, 0.15],
        [0.15, 0.30, 0.95],
        [0.95, 0.85, 0.10],
        [0.85, 0.15, 0.85],
        [0.10, 0.85, 0.90],
        [0.95, 0.55, 0.10],
        [0.55, 0.25, 0.05],
    ]
)
COLOURS = ("distinct", "random")
MIN_VISIBLE_PIXELS = 20
MAX_OBJECTS = 254  # instance ids 1..254 in a uint8 map (255 is void)


@dataclass(frozen=True)
class ShapesStyle:
    """How an image is drawn; the defaults are ``data=shapes``. Scales are fractions of the image side.

    min_scale, max_scale: an object's circumradius is drawn uniformly from this range.
    same_class_fraction: the probability that an object takes the image's dominant class.
    touch_probability: the probability that an object is placed against an earlier one, its centre
        ``min_spacing``–``max_spacing`` × the sum of the two radii away (below 1: they overlap).
    thin_fraction, thin_aspect: that fraction of objects is stretched ``thin_aspect`` : 1 (ellipses,
        bars, slivers); 0: none.
    colours: ``distinct`` (a palette colour per object, at most 8 objects) or ``random`` (drawn
        with repetition, so that touching objects may share a colour).
    texture: contrast of stripes across each object, 0 (flat) to 1.
    background_texture: amplitude of the background's smooth waves (intensity, of 1).
    outline: brightness factor of the one-pixel outline of every object (1: no outline).
    noise: standard deviation of the Gaussian pixel noise (intensity, of 1).
    """

    min_scale: float = 0.13
    max_scale: float = 0.22
    same_class_fraction: float = 0.5
    touch_probability: float = 0.7
    min_spacing: float = 0.55
    max_spacing: float = 1.0
    thin_fraction: float = 0.0
    thin_aspect: float = 6.0
    colours: str = "distinct"
    texture: float = 0.0
    background_texture: float = 0.05
    outline: float = 0.3
    noise: float = 0.02

    def check(self, max_objects: int) -> None:
        """``InvalidInputError`` naming the first knob out of its range."""
        problems = []
        if not 0 < self.min_scale <= self.max_scale <= 1:
            problems.append(f"need 0 < min_scale <= max_scale <= 1, got {self.min_scale}, {self.max_scale}")
        if not 0 < self.min_spacing <= self.max_spacing:
            problems.append(
                f"need 0 < min_spacing <= max_spacing, got {self.min_spacing}, {self.max_spacing}"
            )
        for name in ("same_class_fraction", "touch_probability", "thin_fraction", "texture", "outline"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.thin_aspect < 1:
            problems.append(f"thin_aspect must be at least 1, got {self.thin_aspect}")
        if self.background_texture < 0 or self.noise < 0:
            problems.append(
                f"background_texture and noise must be >= 0, got {self.background_texture}, {self.noise}"
            )
        if self.colours not in COLOURS:
            problems.append(f"colours must be one of {', '.join(COLOURS)}, got {self.colours!r}")
        elif self.colours == "distinct" and max_objects > len(PALETTE):
            problems.append(
                f"colours=distinct has {len(PALETTE)} colours for max_objects={max_objects}: "
                "lower max_objects or set colours=random"
            )
        if problems:
            raise InvalidInputError("shapes data: " + "; ".join(problems))


def _shape_mask(
    class_id: int,
    center: np.ndarray,
    radius: float,
    angle: float,
    yy: np.ndarray,
    xx: np.ndarray,
    aspect: float = 1.0,
) -> np.ndarray:
    """Boolean (H, W) mask of a disk, square or triangle of the given circumradius and rotation,
    stretched ``aspect`` : 1 along its rotated first axis (1: not stretched)."""
    dy, dx = yy - center[0], xx - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    if aspect != 1.0:  # the same area, long along u and thin along v
        stretch = np.sqrt(aspect)
        u, v = u / stretch, v * stretch
    if CLASS_NAMES[class_id] == "disk":
        return u**2 + v**2 <= radius**2
    if CLASS_NAMES[class_id] == "square":
        half_side = radius / np.sqrt(2.0)
        return (np.abs(u) <= half_side) & (np.abs(v) <= half_side)
    # Triangle: inside three half-planes, a little larger than inscribed in the circle.
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        theta = 2.0 * np.pi * k / 3.0
        inside &= np.cos(theta) * u + np.sin(theta) * v <= 0.65 * radius
    return inside


def _boundary(labels: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour of another label: a one-pixel void band, as in VOC."""
    padded = np.pad(labels, 1, mode="edge")
    height, width = labels.shape
    band = np.zeros_like(labels, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        band |= padded[dy : dy + height, dx : dx + width] != labels
    return band & (labels > 0)


def generate_shapes_image(
    rng: np.random.Generator,
    image_size: int = 64,
    min_objects: int = 3,
    max_objects: int = 5,
    style: ShapesStyle = ShapesStyle(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic image with its VOC-style label maps.

    Returns image (H, W, 3) uint8 RGB, instances (H, W) uint8 and classes (H, W) uint8 with
    H = W = ``image_size``. Knobs that are off draw no random numbers, so that the defaults give
    the same images whatever knobs exist.
    """
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
    # Background: grey with a smooth random texture.
    image = np.full((image_size, image_size, 3), 0.45)
    for _ in range(3):
        frequency = rng.uniform(0.05, 0.25, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        image += style.background_texture * np.sin(frequency[0] * yy + frequency[1] * xx + phase)[..., None]

    num_objects = int(rng.integers(min_objects, max_objects + 1))
    # A share of the objects take one dominant class, so same-class instances meet often.
    dominant = rng.integers(1, len(CLASS_NAMES))
    class_ids = np.where(
        rng.random(num_objects) < style.same_class_fraction,
        dominant,
        rng.integers(1, len(CLASS_NAMES), size=num_objects),
    )
    if len(set(class_ids.tolist())) == num_objects:
        class_ids[-1] = class_ids[0]  # at least two instances of one class
    if style.colours == "distinct":
        colours = rng.choice(len(PALETTE), size=num_objects, replace=False)
    else:
        colours = rng.integers(len(PALETTE), size=num_objects)

    instances = np.zeros((image_size, image_size), dtype=np.int64)
    centers: list[np.ndarray] = []
    radii: list[float] = []
    margin = image_size * 0.15
    for index in range(num_objects):
        radius = rng.uniform(style.min_scale, style.max_scale) * image_size
        if centers and rng.random() < style.touch_probability:
            # Next to an earlier object, so that the two touch or overlap.
            neighbour = int(rng.integers(len(centers)))
            direction = rng.uniform(0, 2 * np.pi)
            distance = (radius + radii[neighbour]) * rng.uniform(style.min_spacing, style.max_spacing)
            center = centers[neighbour] + distance * np.array([np.sin(direction), np.cos(direction)])
            center = np.clip(center, margin, image_size - margin)
        else:
            center = rng.uniform(margin, image_size - margin, size=2)
        angle = rng.uniform(0, 2 * np.pi)
        aspect = 1.0
        if style.thin_fraction > 0 and rng.random() < style.thin_fraction:
            aspect = style.thin_aspect
        mask = _shape_mask(int(class_ids[index]), center, radius, angle, yy, xx, aspect)
        # Shading: the instance's colour under a linear light gradient.
        light = rng.uniform(-1, 1, size=2) * 0.15 / radius
        shade = 1.0 + light[0] * (yy - center[0]) + light[1] * (xx - center[1])
        if style.texture > 0:  # stripes of a random period (3–8 pixels) and direction
            period, direction, phase = rng.uniform(3, 8), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
            across = np.cos(direction) * xx + np.sin(direction) * yy
            shade = shade * (1.0 - style.texture * 0.5 * (1.0 + np.sin(2 * np.pi * across / period + phase)))
        image[mask] = PALETTE[colours[index]] * shade[mask, None]
        instances[mask] = index + 1
        centers.append(center)
        radii.append(radius)

    classes = np.zeros_like(instances)
    visible = [i for i in range(1, num_objects + 1) if (instances == i).sum() >= MIN_VISIBLE_PIXELS]
    relabelled = np.zeros_like(instances)
    for new_id, old_id in enumerate(visible, start=1):
        relabelled[instances == old_id] = new_id
        classes[instances == old_id] = class_ids[old_id - 1]
    hidden = (instances > 0) & (relabelled == 0)  # slivers too small to count: void

    band = _boundary(instances)
    image[band] *= style.outline  # a dark outline around every object
    image += rng.normal(0.0, style.noise, size=image.shape)
    void = band | hidden
    relabelled[void] = VOID
    classes[void] = VOID
    image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    return image, relabelled.astype(np.uint8), classes.astype(np.uint8)


class Shapes(Dataset):
    """``num_images`` synthetic images, generated once at construction from ``seed``, drawn as
    ``style`` says.

    Items are dicts: ``image`` (3, H, W) float32 in [0, 1], ``instances`` (H, W) int64 and
    ``classes`` (H, W) int64, with 0 background and 255 void, as for VOC.
    """

    class_names = CLASS_NAMES

    def __init__(
        self,
        num_images: int = 2000,
        image_size: int = 64,
        min_objects: int = 3,
        max_objects: int = 5,
        seed: int = 0,
        style: ShapesStyle = ShapesStyle(),
    ) -> None:
        if num_images < 1:
            raise InvalidInputError(f"num_images must be positive, got {num_images}")
        if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
            raise InvalidInputError(
                f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {min_objects}, {max_objects}"
            )
        if image_size < 16:
            raise InvalidInputError(f"image_size must be at least 16, got {image_size}")
        style.check(max_objects)
        self.style = style
        generated = [
            generate_shapes_image(
                np.random.default_rng([seed, index]), image_size, min_objects, max_objects, style
            )
            for index in range(num_images)
        ]
        images, instances, classes = (np.stack(maps) for maps in zip(*generated, strict=True))
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        self.instances = torch.from_numpy(instances)
        self.classes = torch.from_numpy(classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {
            "image": self.images[index].float() / 255.0,
            "instances": self.instances[index].long(),
            "classes": self.classes[index].long(),
        }
