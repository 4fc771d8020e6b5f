import numpy as np
import pytest
import torch

from dsc.data import VOID, InstanceDataModule, Shapes
from dsc.data.shapes import generate_shapes_image
from dsc.metrics import pairwise_scores


@pytest.fixture(scope="module")
def shapes():
    return Shapes(num_images=120, seed=4)


def test_same_seed_same_images_other_seed_differs():
    first, second, other = Shapes(5, seed=1), Shapes(5, seed=1), Shapes(5, seed=2)
    assert torch.equal(first.images, second.images) and torch.equal(first.instances, second.instances)
    assert not torch.equal(first.images, other.images)


def test_items_follow_voc_conventions(shapes):
    item = shapes[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["image"].min() >= 0.0 and item["image"].max() <= 1.0
    assert item["instances"].dtype == torch.int64 and item["classes"].dtype == torch.int64
    assert shapes.instances.dtype == torch.uint8
    for instances, classes in zip(shapes.instances.long(), shapes.classes.long(), strict=True):
        ids = set(instances.unique().tolist()) - {VOID}
        assert ids == set(range(max(ids) + 1)), "instance ids are 0 (background) and 1..k"
        assert max(ids) >= 2, "several objects per image"
        assert torch.equal(instances == VOID, classes == VOID), "void agrees in both maps"
        assert torch.equal(instances == 0, classes == 0), "background agrees in both maps"
        for instance in ids - {0}:
            assert len(classes[instances == instance].unique()) == 1, "one class per instance"


def test_void_band_lies_on_object_borders(shapes):
    instances = shapes.instances.long()
    void = instances == VOID
    # Every void pixel touches (4-neighbourhood) a pixel that is not of one single object id.
    padded = torch.nn.functional.pad(instances, (1, 1, 1, 1), value=0)
    neighbours = torch.stack(
        [padded[:, 1:-1, :-2], padded[:, 1:-1, 2:], padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]]
    )
    assert void.any()
    assert (neighbours[:, void] != neighbours[0, void]).any(dim=0).float().mean() > 0.5
    assert void.float().mean() < 0.1


def test_same_class_instances_are_common_and_often_touch(shapes):
    repeated = 0
    for instances, classes in zip(shapes.instances.long(), shapes.classes.long(), strict=True):
        per_instance = [int(classes[instances == i][0]) for i in set(instances.unique().tolist()) - {0, VOID}]
        repeated += len(per_instance) > len(set(per_instance))
    assert repeated / len(shapes) > 0.9


def test_semantic_partition_scores_clearly_below_instances(shapes):
    """The built-in data must test instance separation: merging same-class instances hurts."""
    semantic = pairwise_scores(shapes.classes.long(), shapes.instances.long())
    assert semantic["fg_f1"] <= 0.75
    assert semantic["fg_precision"] < 0.6
    assert semantic["fg_recall"] == 1.0
    instances = pairwise_scores(shapes.instances.long(), shapes.instances.long())
    assert instances["fg_f1"] == 1.0


def test_image_is_deterministic_from_its_generator():
    first = generate_shapes_image(np.random.default_rng([0, 3]))
    second = generate_shapes_image(np.random.default_rng([0, 3]))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_images": 0}, "num_images"),
        ({"max_objects": 20}, "max_objects"),
        ({"image_size": 8}, "image_size"),
    ],
)
def test_bad_arguments_are_reported(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Shapes(**kwargs)


def test_datamodule_batches_dicts():
    datamodule = InstanceDataModule(Shapes(10, seed=0), Shapes(6, seed=1), batch_size=4, val_batch_size=3)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["instances"].shape == (4, 64, 64)
    assert len(datamodule.val_dataloader()) == 2
