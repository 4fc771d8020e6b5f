"""Values checked as soon as a config is composed, before any work: counts and sizes that cannot
be, a network without outputs, a learning rate that would not train. Each rule names its key and
applies to every entry point whose config has that key."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from dsc.contracts import InvalidInputError
from dsc.instances import InstanceThresholds


@dataclass(frozen=True)
class AtLeast:
    """``key`` must be at least ``smallest`` (a number of ``meaning``)."""

    key: str
    smallest: int
    meaning: str


AT_LEAST = (
    AtLeast("data.batch_size", 1, "images per training batch"),
    AtLeast("data.val_batch_size", 1, "images per validation batch"),
    AtLeast("data.num_workers", 0, "data loader processes (0: load in the main process)"),
    AtLeast("data.train.num_images", 1, "generated training images"),
    AtLeast("data.val.num_images", 1, "generated validation images"),
    AtLeast("data.train.image_size", 8, "pixels of a generated image's side"),
    AtLeast("model.embed_dim", 0, "embedding channels (0: none)"),
    AtLeast("model.num_classes", 0, "class scores (0: none)"),
    AtLeast("loss.sample_size", 2, "pixels sampled per image (null: every pixel, exactly)"),
    AtLeast("batch_size", 1, "images per forward pass"),
    AtLeast("num_workers", 0, "image-reading processes (0: read in the main process)"),
    AtLeast("max_pixels", 1, "pixels of the largest image read"),
    AtLeast("seeds", 1, "trainings per method"),
    AtLeast("num_shapes", 0, "built-in shapes samples"),
    AtLeast("opset", 7, "the ONNX opset version"),
)


# Numeric keys where a negative value has a meaning (the smallest it may be): Lightning's -1 for
# "no limit" / "every device" / "every batch", and a label to ignore.
NEGATIVE_MEANS = {
    "trainer.max_epochs": -1,
    "trainer.max_steps": -1,
    "trainer.devices": -1,
    "trainer.num_sanity_val_steps": -1,
    "trainer.min_epochs": -1,
    "trainer.min_steps": -1,
}
NEGATIVE_ANY = ("ignore_index",)  # keys ending so take any label
# Limits that, at 0, leave the command nothing to train or score.
NOTHING_AT_ZERO = ("trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches")


def _numbers(node: Any, prefix: str = "") -> list[tuple[str, int | float]]:
    """(dotted key, value) of every number a config holds as given (interpolations, which copy
    another key, are skipped: that key is checked itself)."""
    found: list[tuple[str, int | float]] = []
    if isinstance(node, DictConfig):
        items = [(f"{prefix}{name}", node._get_node(name)) for name in node]
    elif isinstance(node, ListConfig):
        items = [(f"{prefix[:-1]}[{i}]", node._get_node(i)) for i in range(len(node))]
    else:
        return found
    for key, child in items:
        if isinstance(child, DictConfig | ListConfig):
            found += _numbers(child, f"{key}.")
            continue
        value = child._value() if child is not None else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            found.append((key, value))
    return found


def check_numbers(cfg: DictConfig) -> None:
    """Raise ``InvalidInputError`` naming the key for the first number of ``cfg`` that is not finite
    (NaN, ±inf), negative where no negative has a meaning (``NEGATIVE_MEANS``), or a limit of 0
    batches (``NOTHING_AT_ZERO``)."""
    for key, value in _numbers(cfg):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"{key}={value}: not a finite number; give a finite value")
        smallest = NEGATIVE_MEANS.get(key, 0)
        if value < smallest and not key.endswith(NEGATIVE_ANY):
            meaning = " (-1: no limit)" if smallest == -1 else ""
            raise InvalidInputError(f"{key}={value}: must be at least {smallest}{meaning}")
        if key in NOTHING_AT_ZERO and value == 0:
            raise InvalidInputError(
                f"{key}=0 runs no batch: the scores would be of nothing. Give a positive count or "
                "share (1.0: every batch), or leave it unset"
            )


def check_values(cfg: DictConfig) -> None:
    """Raise ``InvalidInputError`` naming the key, its value and what would work, for the first
    value of ``cfg`` that cannot work (``AT_LEAST``, a positive learning rate, a network with at
    least one output channel, ``InstanceThresholds``' own checks of ``min_score`` and ``min_size``,
    a positive ``image_size``), or that ``check_numbers`` refuses."""
    for rule in AT_LEAST:
        value = OmegaConf.select(cfg, rule.key, throw_on_missing=False)
        if isinstance(value, int) and not isinstance(value, bool) and value < rule.smallest:
            raise InvalidInputError(
                f"{rule.key}={value}: the number of {rule.meaning} must be at least {rule.smallest}"
            )
    embed_dim, num_classes = (
        OmegaConf.select(cfg, "model.embed_dim"),
        OmegaConf.select(cfg, "model.num_classes"),
    )
    if embed_dim == 0 and num_classes == 0:
        raise InvalidInputError(
            "model.embed_dim=0 and model.num_classes=0: the network would output nothing; give it an "
            "embedding (model.embed_dim=16), class scores (model.num_classes=…) or both"
        )
    learning_rate = OmegaConf.select(cfg, "model.optimizer.lr")
    if isinstance(learning_rate, int | float) and learning_rate <= 0:
        raise InvalidInputError(
            f"model.optimizer.lr={learning_rate}: the weights would not move (or move uphill); "
            "give a positive learning rate"
        )
    if "min_score" in cfg and "min_size" in cfg:  # predict's and evaluate's: checked where they live
        InstanceThresholds(cfg.min_score, cfg.min_size)
    image_size = OmegaConf.select(cfg, "image_size")
    if image_size is not None and not isinstance(image_size, str):
        sides = list(image_size) if OmegaConf.is_list(image_size) else [image_size]
        if len(sides) != 2 or any(not isinstance(side, int) or side < 1 for side in sides):
            raise InvalidInputError(f"image_size={sides}: give [height, width], two positive pixel counts")
    check_numbers(cfg)
