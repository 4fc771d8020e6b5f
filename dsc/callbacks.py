"""Lightning callbacks of dsc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from dsc.visualize import embedding_rgb, order_by_size, overlay, to_uint8_image


def images_in_batch(batch: dict[str, Any]) -> int:
    """The number of images of a batch (``batch_size_fn`` of Lightning's ``ThroughputMonitor``)."""
    return len(batch["image"])


class ValidationImages(pl.Callback):
    """Show a few validation images each ``every_n_epochs`` epochs: the image, ground-truth and
    predicted instances overlaid, and the embedding's top three principal directions as RGB.

    Always written as PNGs under ``<default_root_dir>/images/epoch_XXX/``; also sent to W&B (as
    images with ground-truth and predicted masks) and TensorBoard when those loggers are active.
    Needs ``validation_step`` to return ``preds`` and ``embeddings`` (``DeepSpectralClustering`` does).
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
        folder = Path(trainer.default_root_dir) / "images" / f"epoch_{trainer.current_epoch:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, truth = batch["image"][index], batch["instances"][index]
            preds = order_by_size(outputs["preds"][index])
            pictures = {
                "image": to_uint8_image(image),
                "ground_truth": overlay(image, truth),
                "prediction": overlay(image, preds),
                "embedding_pca": embedding_rgb(outputs["embeddings"][index]),
            }
            panel = np.concatenate(list(pictures.values()), axis=1)
            Image.fromarray(panel).save(folder / f"val_{index}.png")
            self._send(trainer, index, pictures, truth.cpu().numpy(), preds.cpu().numpy())

    @staticmethod
    def _send(trainer: pl.Trainer, index: int, pictures: dict, truth: np.ndarray, preds: np.ndarray) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                masks = {"ground_truth": {"mask_data": truth}, "predictions": {"mask_data": preds}}
                logger.log_image(
                    key=f"val/example_{index}",
                    images=[pictures["image"], pictures["embedding_pca"]],
                    masks=[masks, None],
                    caption=["instances", "embedding (top 3 principal directions)"],
                    step=trainer.global_step,
                )
            elif isinstance(logger, TensorBoardLogger):
                panel = np.concatenate(list(pictures.values()), axis=1)
                logger.experiment.add_image(
                    f"val/example_{index}", panel, trainer.global_step, dataformats="HWC"
                )
