"""Built-in synthetic instance data in PASCAL VOC's conventions, generated from a seed.

Each image holds several disks, squares and triangles, at least two of one class, placed so that
they often touch or overlap. Every instance has its own colour from a fixed palette, a shading
gradient and a dark outline, so instances are separable from the pixels, while the semantic
(class) partition merges same-class instances and scores clearly lower pairwise precision.
Label maps follow VOC: uint8 instance ids 0 (background), 1..k, and 255 (void) on a band along
every boundary; a class map beside it (0 background, 1 disk, 2 square, 3 triangle, 255 void).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dsc.contracts import InvalidInputError
from dsc.labels import VOID

CLASS_NAMES = ("background", "disk", "square", "triangle")
# Well separated colours, so that instances in one image never look alike.
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
MIN_VISIBLE_PIXELS = 20


def _shape_mask(
    class_id: int, center: np.ndarray, radius: float, angle: float, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Boolean (H, W) mask of a disk, square or triangle of the given circumradius and rotation."""
    dy, dx = yy - center[0], xx - center[1]
    if CLASS_NAMES[class_id] == "disk":
        return dy**2 + dx**2 <= radius**2
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    if CLASS_NAMES[class_id] == "square":
        half_side = radius / np.sqrt(2.0)
        return (np.abs(u) <= half_side) & (np.abs(v) <= half_side)
    # Triangle: inside three half-planes, a little larger than inscribed in the circle.
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        theta = angle + 2.0 * np.pi * k / 3.0
        inside &= np.cos(theta) * dx + np.sin(theta) * dy <= 0.65 * radius
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
    rng: np.random.Generator, image_size: int = 64, min_objects: int = 3, max_objects: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic image with its VOC-style label maps.

    Returns image (H, W, 3) uint8 RGB, instances (H, W) uint8 and classes (H, W) uint8 with
    H = W = ``image_size``.
    """
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
    # Background: grey with a smooth random texture.
    image = np.full((image_size, image_size, 3), 0.45)
    for _ in range(3):
        frequency = rng.uniform(0.05, 0.25, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        image += 0.05 * np.sin(frequency[0] * yy + frequency[1] * xx + phase)[..., None]

    num_objects = int(rng.integers(min_objects, max_objects + 1))
    # Half the objects share one dominant class, so same-class instances meet often.
    dominant = rng.integers(1, len(CLASS_NAMES))
    class_ids = np.where(
        rng.random(num_objects) < 0.5, dominant, rng.integers(1, len(CLASS_NAMES), size=num_objects)
    )
    if len(set(class_ids.tolist())) == num_objects:
        class_ids[-1] = class_ids[0]  # at least two instances of one class
    colours = rng.choice(len(PALETTE), size=num_objects, replace=False)

    instances = np.zeros((image_size, image_size), dtype=np.int64)
    centers: list[np.ndarray] = []
    radii: list[float] = []
    margin = image_size * 0.15
    for index in range(num_objects):
        radius = rng.uniform(0.13, 0.22) * image_size
        if centers and rng.random() < 0.7:
            # Next to an earlier object, so that the two touch or overlap.
            neighbour = int(rng.integers(len(centers)))
            direction = rng.uniform(0, 2 * np.pi)
            distance = (radius + radii[neighbour]) * rng.uniform(0.55, 1.0)
            center = centers[neighbour] + distance * np.array([np.sin(direction), np.cos(direction)])
            center = np.clip(center, margin, image_size - margin)
        else:
            center = rng.uniform(margin, image_size - margin, size=2)
        mask = _shape_mask(int(class_ids[index]), center, radius, rng.uniform(0, 2 * np.pi), yy, xx)
        # Shading: the instance's colour under a linear light gradient.
        light = rng.uniform(-1, 1, size=2) * 0.15 / radius
        shade = 1.0 + light[0] * (yy - center[0]) + light[1] * (xx - center[1])
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
    image[band] *= 0.3  # a dark outline around every object
    image += rng.normal(0.0, 0.02, size=image.shape)
    void = band | hidden
    relabelled[void] = VOID
    classes[void] = VOID
    image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    return image, relabelled.astype(np.uint8), classes.astype(np.uint8)


class Shapes(Dataset):
    """``num_images`` synthetic images, generated once at construction from ``seed``.

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
    ) -> None:
        if num_images < 1:
            raise InvalidInputError(f"num_images must be positive, got {num_images}")
        if not 2 <= min_objects <= max_objects <= len(PALETTE):
            raise InvalidInputError(
                f"need 2 <= min_objects <= max_objects <= {len(PALETTE)}, got {min_objects}, {max_objects}"
            )
        if image_size < 16:
            raise InvalidInputError(f"image_size must be at least 16, got {image_size}")
        generated = [
            generate_shapes_image(np.random.default_rng([seed, index]), image_size, min_objects, max_objects)
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
