"""``InstanceDataModule``: batches of images with instance and class maps for Lightning."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dsc.data.labels import VOID
from dsc.data.transforms import pad_collate
from dsc.losses.sampling import sample_pixels


class WithoutClasses(Dataset):
    """A dataset whose items have every pixel of ``classes`` void, in both maps: the classes are
    never seen in training (for generalisation to unseen classes, paper Section 2)."""

    def __init__(self, dataset: Dataset, classes: list[int]) -> None:
        self.dataset = dataset
        self.classes = torch.tensor(classes, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = dict(self.dataset[index])
        hidden = torch.isin(item["classes"], self.classes)
        item["instances"] = item["instances"].masked_fill(hidden, VOID)
        item["classes"] = item["classes"].masked_fill(hidden, VOID)
        return item


class InstanceDataModule(pl.LightningDataModule):
    """Wraps a training and a validation dataset whose items are dicts with ``image`` (3, H, W)
    float, ``instances`` (H, W) int64 and ``classes`` (H, W) int64 (0 background, 255 void).

    Batches reach the model as the same dict with a leading batch dimension; items of different
    sizes are padded (void labels). With ``sample_size`` set, each training batch also carries
    ``pixel_sample`` (B, sample_size): the spectral loss's pixels, drawn after the batch reached the
    device (``uniform`` or ``balanced`` ``sampling``), so CPU workers only decode and augment.
    ``exclude_classes``: class ids made void in training images only; validation keeps them.
    """

    def __init__(
        self,
        train: Dataset,
        val: Dataset,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        sample_size: int | None = None,
        sampling: str = "uniform",
        exclude_classes: list[int] | None = None,
    ) -> None:
        super().__init__()
        if exclude_classes:
            train = WithoutClasses(train, list(exclude_classes))
        self.sample_size = sample_size
        self.sampling = sampling
        self.train_dataset = train
        self.val_dataset = val
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=shuffle and len(dataset) > batch_size,
            collate_fn=pad_collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.val_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if self.sample_size is not None and self.trainer is not None and self.trainer.training:
            batch["pixel_sample"] = sample_pixels(batch["instances"], self.sample_size, self.sampling, VOID)
        return batch
