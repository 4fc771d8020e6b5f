from pathlib import Path

import numpy as np
import pytest
import torch

from dsc.data import VOID, InstanceDataModule, Shapes, ShapesStyle
from dsc.data.shapes import PALETTE, generate_shapes_image
from dsc.instances import true_instances
from dsc.metrics import InstanceScores, pairwise_scores
from dsc.rounding import connected_components, fill_void


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
        ({"max_objects": 20}, "colours=distinct has 8 colours for max_objects=20"),
        ({"min_objects": 0}, "min_objects"),
        ({"max_objects": 300, "style": ShapesStyle(colours="random")}, "max_objects"),
        ({"image_size": 8}, "image_size"),
        ({"style": ShapesStyle(min_scale=0.3, max_scale=0.2)}, "min_scale <= max_scale"),
        ({"style": ShapesStyle(texture=1.5)}, "texture must lie in"),
        ({"style": ShapesStyle(thin_aspect=0.5)}, "thin_aspect"),
        ({"style": ShapesStyle(colours="rainbow")}, "colours must be one of distinct, random"),
    ],
)
def test_bad_arguments_are_reported(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Shapes(**kwargs)


HARD = {"image_size": 96, "min_objects": 1, "max_objects": 30}


@pytest.fixture(scope="module")
def hard_shapes():
    """``data=shapes_hard`` as its config composes it."""
    from hydra.utils import instantiate
    from hydra_configs import compose_config

    cfg = compose_config("train", Path("."), "data=shapes_hard", "data.val.num_images=120")
    return instantiate(cfg.data.val)


def test_shapes_hard_config_turns_every_knob(hard_shapes):
    assert hard_shapes.images.shape[-2:] == (96, 96)
    assert hard_shapes.style != ShapesStyle() and hard_shapes.style.colours == "random"


def _instance_counts(shapes: Shapes) -> list[int]:
    return [len(set(image.unique().tolist()) - {0, VOID}) for image in shapes.instances.long()]


def _elongation(mask: torch.Tensor) -> float:
    """The ratio of the principal axes' spreads of a mask's pixels."""
    points = torch.nonzero(mask).double()
    eigenvalues = torch.linalg.eigvalsh(torch.cov(points.T))
    return float((eigenvalues[1] / eigenvalues[0].clamp(min=1e-9)).sqrt())


def test_shapes_hard_varies_count_scale_and_thinness(hard_shapes):
    counts = _instance_counts(hard_shapes)
    assert min(counts) <= 2 and max(counts) >= 20, "from one or two objects to crowds"
    areas, elongations = [], []
    for image in hard_shapes.instances.long()[:40]:
        for instance in set(image.unique().tolist()) - {0, VOID}:
            mask = image == instance
            areas.append(int(mask.sum()))
            if mask.sum() >= 40:
                elongations.append(_elongation(mask))
    assert max(areas) / min(areas) > 50, "object scales vary widely"
    assert sum(e > 3 for e in elongations) / len(elongations) > 0.1, "thin objects are common"


def test_random_colours_repeat_within_an_image():
    """With colours=random two objects of an image, touching ones too, may share a colour."""
    shared = 0
    for index in range(40):
        image, instances, _ = generate_shapes_image(
            np.random.default_rng([0, index]), **HARD, style=ShapesStyle(colours="random")
        )
        colours = {}
        for instance in set(np.unique(instances).tolist()) - {0, VOID}:
            mean = image[instances == instance].mean(axis=0) / 255.0
            colours[instance] = int(np.abs(PALETTE - mean).sum(axis=1).argmin())
        shared += len(colours) > len(set(colours.values()))
    assert shared > 20


def test_shapes_hard_defeats_the_semantic_oracle(hard_shapes):
    """The ground-truth class map split into connected components (the best a semantic network can
    do that way) scores PQ ≤ 0.60: touching same-class objects merge, occluded ones fall apart."""
    instances, classes = hard_shapes.instances.long(), hard_shapes.classes.long()
    void = instances == VOID
    filled = fill_void(classes)
    components = connected_components(filled)
    oracle = true_instances(torch.where(~void & (filled != 0), components + 1, 0), filled, void=-1)
    scores = InstanceScores(num_classes=4)
    scores.update(oracle, true_instances(instances, classes), void)
    assert scores.compute()["pq"] <= 0.60
    easy = Shapes(120, seed=1000000)
    assert (
        pairwise_scores(classes, instances)["fg_f1"]
        < pairwise_scores(easy.classes.long(), easy.instances.long())["fg_f1"]
    )


def test_knobs_at_their_defaults_draw_the_default_images():
    default = generate_shapes_image(np.random.default_rng([5, 1]))
    explicit = generate_shapes_image(
        np.random.default_rng([5, 1]), style=ShapesStyle(thin_fraction=0.0, texture=0.0)
    )
    for a, b in zip(default, explicit, strict=True):
        np.testing.assert_array_equal(a, b)
    textured = generate_shapes_image(np.random.default_rng([5, 1]), style=ShapesStyle(texture=0.5))
    assert not np.array_equal(default[0], textured[0])


def test_datamodule_batches_dicts():
    datamodule = InstanceDataModule(Shapes(10, seed=0), Shapes(6, seed=1), batch_size=4, val_batch_size=3)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["instances"].shape == (4, 64, 64)
    assert len(datamodule.val_dataloader()) == 2


@pytest.mark.parametrize("data", ["shapes", "shapes_hard"])
def test_train_val_and_test_share_no_image(data):
    """Three splits from three seeds: what is tuned on (val) and reported (test) is never trained on."""
    from hydra.utils import instantiate
    from hydra_configs import compose_config

    sizes = ["data.train.num_images=200", "data.val.num_images=100"]
    for seed in (0, 1, 2):  # the training set follows the run's seed; val and test do not
        cfg = compose_config("train", Path("."), f"data={data}", f"seed={seed}", *sizes)
        splits = {name: instantiate(cfg.data[name]) for name in ("train", "val", "test")}
        assert [len(splits[name]) for name in ("train", "val", "test")] == [200, 100, 100]
        seen: dict[bytes, str] = {}
        for name, dataset in splits.items():
            for index in range(len(dataset)):
                image = dataset[index]["image"].numpy().tobytes()
                assert seen.setdefault(image, name) == name, f"{name} image {index} is in {seen[image]}"
        assert len(seen) == 400
