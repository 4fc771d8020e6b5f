"""``InstanceDataModule``: batches of images with instance and class maps for Lightning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from dsc.data.labels import VOID
from dsc.data.transforms import pad_collate
from dsc.losses.sampling import sample_pixels


@runtime_checkable
class ClassNamedDataset(Protocol):
    """A data set that names its classes: ``class_names[c]`` is class c's (0 background). dsc's
    data sets all do; the data module then checks ``exclude_classes`` against them."""

    class_names: Sequence[str]


def check_class_ids(class_ids: Sequence[int], dataset: Dataset) -> None:
    """Raise ValueError naming the ids that are not object classes of ``dataset`` (when it names its
    classes): excluding them would make the unseen-class scores meaningless."""
    if not isinstance(dataset, ClassNamedDataset):
        return
    names = dataset.class_names
    unknown = [c for c in class_ids if not 1 <= c < len(names)]
    if unknown:
        listed = ", ".join(f"{c} {name}" for c, name in enumerate(names) if c > 0)
        raise ValueError(
            f"data.exclude_classes={list(class_ids)}: {unknown} are not object classes of "
            f"{type(dataset).__name__}, whose classes are {listed}"
        )


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
    ``train`` may be None for validation alone (``dsc.evaluate``): its files are then never read.

    Distributed and resumable: the training order is a permutation drawn from ``seed`` and the
    epoch, split between processes, so N processes with batch size b see, step by step, the same
    images as one process with batch size N·b. Validation images are split without the padding
    duplicates of Lightning's default sampler, so every image counts once. Pixel samples depend on
    (``seed``, process rank, batch number) only: each rank draws different pixels, and a resumed run
    draws the same ones as an uninterrupted run. The loaders save their position in checkpoints
    (torchdata's ``StatefulDataLoader``), so a run resumed mid-epoch continues with the next batch.
    """

    def __init__(
        self,
        train: Dataset | None,
        val: Dataset,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        sample_size: int | None = None,
        sampling: str = "uniform",
        exclude_classes: list[int] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if exclude_classes and train is not None:
            check_class_ids(exclude_classes, train)
            train = WithoutClasses(train, list(exclude_classes))
        self.sample_size = sample_size
        self.sampling = sampling
        self.train_dataset = train
        self.val_dataset = val
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._sample_generators: dict[torch.device, torch.Generator] = {}

    def _processes(self) -> tuple[int, int]:
        """(number of processes, this process's rank) of the trainer; (1, 0) without one."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def _loader(
        self, dataset: Dataset, batch_size: int, sampler: Sampler | None, drop_last: bool = False
    ) -> StatefulDataLoader:
        return StatefulDataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=drop_last,
            collate_fn=pad_collate,
        )

    def train_dataloader(self) -> StatefulDataLoader:
        if self.train_dataset is None:
            raise ValueError("this data module was built for validation only (train=None)")
        processes, rank = self._processes()
        # A DistributedSampler also with one process, so the order does not depend on their number
        # (Lightning keeps a DistributedSampler it is given and calls its set_epoch).
        order = DistributedSampler(self.train_dataset, processes, rank, shuffle=True, seed=self.seed)
        # Lightning sets the epoch again before each epoch, but a run resumed mid-epoch has its
        # iterator (fast-forwarded from the checkpoint) made before that: give it the right epoch.
        order.set_epoch(self.trainer.current_epoch if self.trainer is not None else 0)
        # Drop a last short batch, unless it is the only one.
        return self._loader(
            self.train_dataset, self.batch_size, order, drop_last=order.num_samples > self.batch_size
        )

    def val_dataloader(self) -> StatefulDataLoader:
        processes, rank = self._processes()
        if processes > len(self.val_dataset) > 0:
            raise ValueError(
                f"the validation set has {len(self.val_dataset)} images, fewer than the {processes} "
                "processes that share it: validate on more images or with fewer devices"
            )
        # Round-robin without repeats: every image scored once (InstanceScores restores this order).
        split = (
            UnrepeatedDistributedSampler(self.val_dataset, processes, rank, shuffle=False)
            if processes > 1
            else None
        )
        return self._loader(self.val_dataset, self.val_batch_size, split)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if self.sample_size is not None and self.trainer is not None and self.trainer.training:
            batch["pixel_sample"] = sample_pixels(
                batch["instances"],
                self.sample_size,
                self.sampling,
                VOID,
                generator=self._sample_generator(batch),
            )
        return batch

    def _sample_generator(self, batch: dict[str, Any]) -> torch.Generator:
        """A generator on the batch's device seeded from (seed, rank, number of this batch in the run)."""
        device = batch["instances"].device
        generator = self._sample_generators.get(device)
        if generator is None:
            generator = self._sample_generators[device] = torch.Generator(device)
        batch_number = self.trainer.fit_loop.epoch_loop.batch_progress.total.ready
        entropy = [self.seed, self.trainer.global_rank, batch_number]
        generator.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1))
        return generator
