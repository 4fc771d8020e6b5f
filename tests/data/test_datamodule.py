"""InstanceDataModule under DDP and resumption: the order of images and their split between ranks."""

from types import SimpleNamespace

import pytest
import torch

from dsc.data import InstanceDataModule, Shapes


def with_trainer(datamodule: InstanceDataModule, rank: int, world_size: int = 2, batches_seen: int = 0):
    """The trainer attributes the data module reads: processes, stage and the batch counter."""
    progress = SimpleNamespace(total=SimpleNamespace(ready=batches_seen))
    datamodule.trainer = SimpleNamespace(
        world_size=world_size,
        global_rank=rank,
        current_epoch=0,
        training=True,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
    )
    return datamodule


def image_ids(batch: dict) -> list[bytes]:
    return [image.numpy().tobytes() for image in batch["image"]]


def test_processes_split_each_step_of_one_process():
    dataset = Shapes(16, 16, seed=3)
    one = with_trainer(InstanceDataModule(dataset, dataset, batch_size=4), rank=0, world_size=1)
    two = [with_trainer(InstanceDataModule(dataset, dataset, batch_size=2), rank=r) for r in (0, 1)]
    for epoch in (0, 1):
        loaders = [module.train_dataloader() for module in (one, *two)]
        for loader in loaders:
            loader.sampler.set_epoch(epoch)  # as Lightning does
        for single, *split in zip(*loaders, strict=True):
            assert sorted(image_ids(single)) == sorted(image for part in split for image in image_ids(part))


def test_validation_images_are_split_without_duplicates():
    dataset = Shapes(7, 16, seed=3)
    seen = [
        image
        for rank in (0, 1)
        for batch in with_trainer(
            InstanceDataModule(dataset, dataset, val_batch_size=2), rank
        ).val_dataloader()
        for image in image_ids(batch)
    ]
    assert sorted(seen) == sorted(image_ids({"image": torch.stack([item["image"] for item in dataset])}))


def test_a_validation_set_smaller_than_the_number_of_processes_is_refused():
    dataset = Shapes(1, 16)
    with pytest.raises(ValueError, match="1 images, fewer than the 2 processes"):
        with_trainer(InstanceDataModule(dataset, dataset), rank=1).val_dataloader()
