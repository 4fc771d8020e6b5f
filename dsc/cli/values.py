"""Values checked as soon as a config is composed, before any work: counts and sizes that cannot
be, a network without outputs, a learning rate that would not train. Each rule names its key and
applies to every entry point whose config has that key."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

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


def check_values(cfg: DictConfig) -> None:
    """Raise ``InvalidInputError`` naming the key, its value and what would work, for the first
    value of ``cfg`` that cannot work (``AT_LEAST``, a positive learning rate, a network with at
    least one output channel, ``InstanceThresholds``' own checks of ``min_score`` and ``min_size``,
    a positive ``image_size``)."""
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
