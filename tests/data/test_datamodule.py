"""InstanceDataModule under DDP and resumption: the order of images and the pixel samples."""

from types import SimpleNamespace

import pytest
import torch

from dsc.data import VOID, InstanceDataModule, Shapes


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


def pixel_sample(rank: int, batches_seen: int, seed: int = 0) -> torch.Tensor:
    datamodule = with_trainer(
        InstanceDataModule(Shapes(4, 32), Shapes(2, 32), sample_size=64, seed=seed),
        rank,
        batches_seen=batches_seen,
    )
    batch = next(iter(datamodule.train_dataloader()))
    return datamodule.on_after_batch_transfer(batch, 0)["pixel_sample"]


def test_each_rank_and_batch_draws_its_own_pixels_and_a_resumed_run_the_same():
    first = pixel_sample(rank=0, batches_seen=3)
    assert torch.equal(first, pixel_sample(rank=0, batches_seen=3))  # the same after resuming
    assert not torch.equal(first, pixel_sample(rank=1, batches_seen=3))
    assert not torch.equal(first, pixel_sample(rank=0, batches_seen=4))
    assert not torch.equal(first, pixel_sample(rank=0, batches_seen=3, seed=1))


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


def test_pixel_sample_is_drawn_after_transfer_in_training_only():
    datamodule = with_trainer(
        InstanceDataModule(Shapes(4, seed=0), Shapes(2, seed=1), sample_size=32), rank=0, world_size=1
    )
    batch = next(iter(datamodule.train_dataloader()))
    sampled = datamodule.on_after_batch_transfer(dict(batch), 0)
    assert sampled["pixel_sample"].shape == (4, 32)
    flat = batch["instances"].flatten(1)
    assert (flat.gather(1, sampled["pixel_sample"]) != VOID).all()
    datamodule.trainer.training = False
    assert "pixel_sample" not in datamodule.on_after_batch_transfer(dict(batch), 0)


def test_a_validation_set_smaller_than_the_number_of_processes_is_refused():
    dataset = Shapes(1, 16)
    with pytest.raises(ValueError, match="1 images, fewer than the 2 processes"):
        with_trainer(InstanceDataModule(dataset, dataset), rank=1).val_dataloader()
