"""``DeepSpectralClustering``: the LightningModule that trains an embedding network with the
spectral loss and scores its rounded partitions (paper, Sections 2.2 and 2.3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsc.data.labels import VOID
from dsc.metrics import PairwiseScores

Batch = dict[str, Tensor]


class DeepSpectralClustering(pl.LightningModule):
    """Embedding network → unit normalisation → spectral loss; validation rounds and scores.

    backbone: any network (B, 3, H, W) → (B, d, H, W).
    loss: ``(embeddings, labels, **overrides) → scalar``, e.g. ``dsc.losses.SpectralLoss``;
        validation calls it with ``sample_size=None`` (over all pixels).
    rounding: ``(rows (N, d), generator=...) → labels (N,)``, e.g. ``dsc.rounding.kwikcluster``.
    optimizer / scheduler: partials taking the parameters / the optimizer (``scheduler`` optional).
    rounding_seed: seeds the rounding at the start of every validation, so epochs are comparable.
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: Callable[..., Tensor],
        rounding: Callable[..., Tensor],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        rounding_seed: int = 0,
        monitor: str = "val/pairwise_fg_f1",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.loss = loss
        self.rounding = rounding
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.rounding_seed = rounding_seed
        self.monitor = monitor
        self.val_scores = PairwiseScores(ignore_index=VOID)
        self.val_semantic_oracle = PairwiseScores(ignore_index=VOID)
        self._rounding_generator = torch.Generator()
        self.run_config: dict[str, Any] | None = None  # the Hydra config, saved in checkpoints

    def forward(self, images: Tensor) -> Tensor:
        """images (B, 3, H, W) → embeddings (B, d, H, W) with unit-length pixel vectors."""
        return F.normalize(self.backbone(images), dim=1)

    def round(self, embeddings: Tensor) -> Tensor:
        """embeddings (B, d, H, W) → instance labels (B, H, W), each image rounded on its own."""
        batch, _, height, width = embeddings.shape
        rows = embeddings.detach().float().flatten(2).transpose(1, 2)
        return torch.stack(
            [self.rounding(image_rows, generator=self._rounding_generator) for image_rows in rows]
        ).view(batch, height, width)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self.loss(self(batch["image"]), batch["instances"])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}): lower the learning rate "
                "(model.optimizer.lr) or check the input data"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._rounding_generator.manual_seed(self.rounding_seed)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        embeddings = self(batch["image"])
        instances = batch["instances"]
        self.log(
            "val/loss",
            self.loss(embeddings, instances, sample_size=None),
            batch_size=len(instances),
            sync_dist=True,
        )
        self.val_scores.update(self.round(embeddings), instances)
        # The ground-truth class map as a partition: what a perfect semantic segmenter scores.
        self.val_semantic_oracle.update(batch["classes"], instances)

    def on_validation_epoch_end(self) -> None:
        for prefix, metric in (
            ("val/pairwise_", self.val_scores),
            ("val/semantic_oracle/pairwise_", self.val_semantic_oracle),
        ):
            for name, value in metric.compute().items():
                self.log(prefix + name, value.float(), prog_bar=prefix + name == self.monitor)
            metric.reset()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer)},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["dsc_config"] = self.run_config
