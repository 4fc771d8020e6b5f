"""``ValidationImages``: pictures of a few validation images each epoch, as PNG files and in the
loggers that show images (W&B, TensorBoard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from dsc.data.datamodule import InstanceDataModule, class_names_of
from dsc.outputs.files import save_image
from dsc.outputs.pictures import comparison_panels, match_to_truth, panel_scale, titled_grid, upscale


def validation_class_names(trainer: pl.Trainer) -> list[str] | None:
    """The class names of the trainer's validation data set (class 0 first), or None."""
    datamodule = trainer.datamodule
    dataset = datamodule.val_dataset if isinstance(datamodule, InstanceDataModule) else None
    return class_names_of(dataset)


class ValidationImages(pl.Callback):
    """Show a few validation images each ``every_n_epochs`` epochs, two by two under titles and at
    least 256 pixels high (``dsc.outputs.pictures.comparison_panels``): the image, the ground-truth
    instances, the predicted segments coloured like the true instances they match, with boundaries,
    and the embedding's top three principal directions as RGB.

    Always written as PNGs under ``<default_root_dir>/images/epoch_XXX/`` (``images/final/`` for the
    scoring after training); also sent to W&B (as
    images with ground-truth and predicted masks) and TensorBoard when those loggers are active.
    Needs ``validation_step`` to return ``preds`` and ``embeddings`` (``DeepSpectralClustering``'s
    do); classes are named when the validation data set names them (``ClassNamedDataset``).
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
        class_names = validation_class_names(trainer)
        for index in range(count):
            image, truth = batch["image"][index], batch["instances"][index]
            preds = outputs["preds"][index]
            matched = match_to_truth(preds, truth)
            pictures = comparison_panels(image, truth, preds, outputs["embeddings"][index], matched)
            panel = titled_grid(pictures)
            save_image(Image.fromarray(panel), folder / f"val_{index}.png")
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
