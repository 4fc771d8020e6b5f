"""Lightning callbacks of dsc."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from dsc.visualize import comparison_panels, match_to_truth, panel_scale, titled_row, upscale

log = logging.getLogger(__name__)
LAST_CHECKPOINT = "last.ckpt"


def images_in_batch(batch: dict[str, Any]) -> int:
    """The number of images of a batch (``batch_size_fn`` of Lightning's ``ThroughputMonitor``)."""
    return len(batch["image"])


class ValidationImages(pl.Callback):
    """Show a few validation images each ``every_n_epochs`` epochs, side by side under titles and at
    least 256 pixels high (``dsc.visualize.comparison_panels``): the image, the ground-truth
    instances, the predicted segments coloured like the true instances they match, with boundaries,
    and the embedding's top three principal directions as RGB.

    Always written as PNGs under ``<default_root_dir>/images/epoch_XXX/`` (``images/final/`` for the
    scoring after training); also sent to W&B (as
    images with ground-truth and predicted masks) and TensorBoard when those loggers are active.
    Needs ``validation_step`` to return ``preds`` and ``embeddings`` and the module's ``class_names``
    (``DeepSpectralClustering`` has both).
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1) -> None:
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs

    @rank_zero_only
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        count = min(self.num_images, len(batch["image"]))
        # The scoring after fit (and dsc.evaluate's) is not another epoch.
        name = f"epoch_{trainer.current_epoch:03d}" if trainer.state.fn == "fit" else "final"
        folder = Path(trainer.default_root_dir) / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        class_names = pl_module.class_names
        for index in range(count):
            image, truth = batch["image"][index], batch["instances"][index]
            preds = outputs["preds"][index]
            matched = match_to_truth(preds, truth)
            pictures = comparison_panels(image, truth, preds, outputs["embeddings"][index], matched)
            panel = titled_row(pictures)
            Image.fromarray(panel).save(folder / f"val_{index}.png")
            factor = panel_scale(image.shape[-2])
            masks = {
                "ground_truth": upscale(truth.cpu().numpy(), factor),
                "predictions": upscale(matched.numpy(), factor),
            }
            classes = upscale(batch["classes"][index].cpu().numpy(), factor) if class_names else None
            self._send(trainer, index, pictures, panel, masks, classes, class_names)

    @staticmethod
    def _send(
        trainer: pl.Trainer,
        index: int,
        pictures: dict[str, np.ndarray],
        panel: np.ndarray,
        masks: dict[str, np.ndarray],
        classes: np.ndarray | None,
        class_names: list[str] | None,
    ) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                layers = {name: {"mask_data": mask} for name, mask in masks.items()}
                if classes is not None and class_names:
                    labels = {c: name for c, name in enumerate(class_names)} | {255: "void"}
                    layers["classes"] = {"mask_data": classes, "class_labels": labels}
                logger.log_image(
                    key=f"val/example_{index}",
                    images=[pictures["image"], pictures["embedding"]],
                    masks=[layers, None],
                    caption=["instances (matched colours)", "embedding (top 3 principal directions)"],
                    step=trainer.global_step,
                )
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(
                    f"val/example_{index}", panel, trainer.global_step, dataformats="HWC"
                )


class LastCheckpoint(pl.Callback):
    """The run's one resumable state, ``<dirpath>/last.ckpt``, always the newest.

    Written every ``every_n_train_steps`` optimizer steps, after every validation of ``fit``, at the
    end of training, and when training stops early: on SIGTERM (Lightning stops at the next batch),
    SIGINT or any other exception, so that ``ckpt_path=last`` continues from where the run stopped.
    A run stopped by an exception resumes after the batch it failed on. Each write goes to a
    temporary file that is then renamed, so a run killed while writing keeps the previous
    ``last.ckpt`` whole. Nothing is written with non-finite weights (``DeepSpectralClustering``
    refuses to save them).
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 100) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be at least 1, got {every_n_train_steps}")
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        self._saved_step: int | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / LAST_CHECKPOINT

    def save(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` (all processes must call this; rank zero writes); not in fast_dev_run."""
        if trainer.fast_dev_run:
            return
        temporary = self.path.with_name(f".{LAST_CHECKPOINT}.partial")
        trainer.save_checkpoint(temporary)  # ends with a barrier: every rank waits for the write
        if trainer.is_global_zero:
            os.replace(temporary, self.path)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if step != self._saved_step and (step % self.every_n_train_steps == 0 or trainer.received_sigterm):
            self.save(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._saved_step:
            self.save(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn != "fit" or isinstance(exception, FloatingPointError):
            return  # not training, or diverged: the last finite state stays last.ckpt
        if trainer.world_size > 1 and not trainer.received_sigterm:
            # The other processes are not here to save with this one (SIGTERM reaches them all).
            log.warning(
                "training failed in one of %d processes; last.ckpt is not updated", trainer.world_size
            )
            return
        if trainer.global_step == self._saved_step:
            return
        try:
            self.save(trainer)
            log.warning("training stopped (%s): saved %s", type(exception).__name__, self.path)
        except Exception as error:  # never hide the exception that stopped training
            log.error("training stopped and %s could not be updated: %s", self.path, error)


class ValidationTime(pl.Callback):
    """Seconds spent in validation during ``fit`` (rounding, metrics, pictures and the sanity check
    included), so a run can report how its time splits between training and validation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None


class NetworkSummary(pl.Callback):
    """Log the network a run trains, once at the start of ``fit``: its type, its parameters (and
    their size in MiB) in total and per top-level block, and the heads. Lightning's own summary
    would list every metric module of the LightningModule too, each with 0 parameters."""

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        backbone = pl_module.backbone
        heads = []
        if pl_module.embed_dim:
            heads.append(f"embedding d = {pl_module.embed_dim}")
        if pl_module.num_classes:
            heads.append(f"classes C = {pl_module.num_classes}")
        lines = [
            f"network: {type(backbone).__name__} ({type(backbone).__module__}), "
            f"{_count(backbone)} parameters ({_mebibytes(backbone):.1f} MiB), heads: {', '.join(heads)}"
        ]
        for name, block in backbone.named_children():
            lines.append(f"  {name:<12} {type(block).__name__:<20} {_count(block):>8}")
        log.info("\n".join(lines))


def _count(module: Any) -> str:
    """A module's parameter count, as Lightning prints them (42.5 K, 134 M)."""
    number = sum(p.numel() for p in module.parameters())
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if number >= size:
            return f"{number / size:.1f} {unit}"
    return str(number)


def _mebibytes(module: Any) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20
