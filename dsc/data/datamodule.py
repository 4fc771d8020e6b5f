"""``InstanceDataModule``: batches of images with instance and class maps for Lightning."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from dsc.contracts import InvalidInputError
from dsc.data.transforms import pad_collate
from dsc.data.verify import Level, verify_dataset
from dsc.labels import VOID


@runtime_checkable
class ClassNamedDataset(Protocol):
    """A data set that names its classes: ``class_names[c]`` is class c's (0 background). dsc's
    data sets all do; the data module then checks ``exclude_classes`` against them."""

    class_names: Sequence[str]


def class_names_of(dataset: Dataset) -> list[str] | None:
    """The class names of a data set that names them (class 0 first), else None."""
    return list(dataset.class_names) if isinstance(dataset, ClassNamedDataset) else None


def check_class_ids(class_ids: Sequence[int], dataset: Dataset) -> None:
    """Raise ValueError naming the ids that are not object classes of ``dataset`` (when it names its
    classes): excluding them would make the unseen-class scores meaningless."""
    if not isinstance(dataset, ClassNamedDataset):
        return
    names = dataset.class_names
    unknown = [c for c in class_ids if not 1 <= c < len(names)]
    if unknown:
        listed = ", ".join(f"{c} {name}" for c, name in enumerate(names) if c > 0)
        raise InvalidInputError(
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
    sizes are padded (void labels). CPU workers only decode and augment: a sampled loss draws its
    pixels on the device (``DeepSpectralClustering.sample_generator``). ``exclude_classes``: class
    ids made void in training images only; validation keeps them. ``train`` may be None for
    validation alone (``dsc.evaluate``): its files are then never read. ``test``: the split that
    results are reported on (``dsc.table1``, ``dsc.evaluate split=test``), never seen by training,
    checkpoint selection or tuning; it is not built here (``dsc.train`` passes None): scoring it
    builds it in the validation's place (``dsc.training.scoring``).

    ``verify`` (``none``, ``header``, ``full``; ``dsc.data.verify``): how the files of both sets are
    checked when the module is built, so bad data fail before the first step. ``full`` reads every
    record in ``num_workers`` processes; the processes Lightning launches for DDP check headers only,
    as the first process read every file before it launched them.

    Distributed and resumable: the training order is a permutation drawn from ``seed`` and the
    epoch, split between processes, so N processes with batch size b see, step by step, the same
    images as one process with batch size N·b. Validation images are split without the padding
    duplicates of Lightning's default sampler, so every image counts once. The loaders save their
    position in checkpoints (torchdata's ``StatefulDataLoader``), so a run resumed mid-epoch
    continues with the next batch.
    """

    def __init__(
        self,
        train: Dataset | None,
        val: Dataset,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        exclude_classes: list[int] | None = None,
        seed: int = 0,
        verify: Level = "header",
        test: Dataset | None = None,
    ) -> None:
        super().__init__()
        if test is not None:
            raise InvalidInputError(
                "the test split is built only to be scored, in the validation set's place: build "
                "the data with test=None (dsc.training.scoring.score_checkpoint scores it)"
            )
        # Lightning's launcher sets LOCAL_RANK in the processes it starts after this one has verified.
        if verify == "full" and os.environ.get("LOCAL_RANK", "0") != "0":
            verify = "header"
        if train is not None:
            verify_dataset(train, verify, num_workers, training=True, name="training")
        verify_dataset(val, verify, num_workers, name="validation")
        if exclude_classes and train is not None:
            check_class_ids(exclude_classes, train)
            train = WithoutClasses(train, list(exclude_classes))
        self.train_dataset = train
        self.val_dataset = val
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed

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
            raise InvalidInputError("this data module was built for validation only (train=None)")
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
            raise InvalidInputError(
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
