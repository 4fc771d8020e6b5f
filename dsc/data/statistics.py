"""``TrainingImages``: what a model's training images looked like (sizes, colours), stored with its
checkpoints, so that ``dsc.predict`` can say when an input is far from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

MEASURED_IMAGES = 64  # training images measured, evenly spaced through the data set


@dataclass(frozen=True)
class TrainingImages:
    """The training data's name, how many of its images were measured, their smallest and largest
    height and width (pixels), and the per-channel mean and standard deviation of their pixels
    (RGB in [0, 1])."""

    name: str
    images: int
    heights: tuple[int, int]
    widths: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def measure(cls, dataset: Dataset, name: str, max_images: int = MEASURED_IMAGES) -> TrainingImages:
        """Measure up to ``max_images`` items' ``image`` (3, H, W) of ``dataset``, evenly spaced, as
        training sees them (after its augmentations, whose random draws are not taken from training's)."""
        count = min(max_images, len(dataset))
        if count == 0:
            raise ValueError(f"the training data {name} hold no images to measure")
        picks = torch.linspace(0, len(dataset) - 1, count).round().long().unique().tolist()
        sizes, total, squares, pixels = [], 0.0, 0.0, 0
        with torch.random.fork_rng(devices=[]):  # random augmentations leave training's draws alone
            images = [dataset[index]["image"].double() for index in picks]
        for image in images:
            sizes.append(tuple(image.shape[-2:]))
            total = total + image.sum(dim=(1, 2))
            squares = squares + image.square().sum(dim=(1, 2))
            pixels += image.shape[-2] * image.shape[-1]
        mean = total / pixels
        std = (squares / pixels - mean.square()).clamp(min=0).sqrt()
        heights, widths = [h for h, _ in sizes], [w for _, w in sizes]
        return cls(
            name,
            len(picks),
            (min(heights), max(heights)),
            (min(widths), max(widths)),
            tuple(round(float(m), 4) for m in mean),
            tuple(round(float(s), 4) for s in std),
        )

    def far(self, image: Tensor) -> str | None:
        """Why a (3, H, W) image in [0, 1] is far from the training images, or None. The rule:
        its height or width is under half the smallest or over twice the largest of training; or a
        channel's mean is more than two training standard deviations from the training mean; or a
        channel's standard deviation is under half or over twice the training one."""
        height, width = image.shape[-2:]
        (low_h, high_h), (low_w, high_w) = self.heights, self.widths
        if not (low_h / 2 <= height <= 2 * high_h and low_w / 2 <= width <= 2 * high_w):
            return f"{height}×{width} pixels (training: {self._sizes()})"
        pixels = image.detach().double().flatten(1)
        mean, std = pixels.mean(dim=1).tolist(), pixels.std(dim=1).tolist()
        for channel, (m, s, m0, s0) in enumerate(zip(mean, std, self.mean, self.std, strict=False)):
            if abs(m - m0) > 2 * s0 or not s0 / 2 <= s <= 2 * s0:
                return (
                    f"its colours (channel {channel}: mean {m:.2f}, std {s:.2f}; training: mean "
                    f"{m0:.2f}, std {s0:.2f})"
                )
        return None

    def describe(self) -> str:
        """One line: ``shapes (64×64 px, mean 0.46 0.44 0.42, std 0.19 0.15 0.19)``."""
        numbers = " ".join(f"{m:.2f}" for m in self.mean), " ".join(f"{s:.2f}" for s in self.std)
        return f"{self.name} ({self._sizes()}, mean {numbers[0]}, std {numbers[1]})"

    def _sizes(self) -> str:
        (low_h, high_h), (low_w, high_w) = self.heights, self.widths
        heights = f"{low_h}" if low_h == high_h else f"{low_h}–{high_h}"
        widths = f"{low_w}" if low_w == high_w else f"{low_w}–{high_w}"
        return f"{heights}×{widths} px"

    def as_record(self) -> dict[str, Any]:
        """Plain data, for a checkpoint's record (``dsc.training.checkpoint_record``)."""
        return {
            name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrainingImages:
        return cls(
            str(record["name"]),
            int(record["images"]),
            tuple(record["heights"]),
            tuple(record["widths"]),
            tuple(record["mean"]),
            tuple(record["std"]),
        )
