import importlib

import pytest
import torch
import torch.nn.functional as F
from synthetic_clusters import noisy_clusters, same_partition

from dsc.rounding import compiled_cpu, kwikcluster, kwikcluster_soft
from dsc.rounding.hashing import draw_seed, hash_keys, hash_uniform


def visiting_order(seed_generator_seed, num_pixels):
    seed = draw_seed(torch.Generator().manual_seed(seed_generator_seed))
    return seed, torch.argsort(hash_keys(seed, 0, num_pixels, torch.device("cpu"))[0], stable=True).tolist()


def reference_kwikcluster(rows, order, joins):
    """KwikCluster as written in Ailon et al., one pixel at a time in plain Python."""
    labels = [-1] * len(rows)
    cluster = 0
    for pivot in order:
        if labels[pivot] >= 0:
            continue
        for other in range(len(rows)):
            if labels[other] < 0 and (
                other == pivot or joins(float(rows[other] @ rows[pivot]), other, cluster)
            ):
                labels[other] = cluster
        cluster += 1
    return torch.tensor(labels)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9])
def test_matches_plain_reference(threshold):
    rows = F.normalize(torch.randn(300, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    _, order = visiting_order(7, 300)
    labels = kwikcluster(rows, threshold, generator=torch.Generator().manual_seed(7))
    assert torch.equal(labels, reference_kwikcluster(rows, order, lambda s, i, c: s > threshold))


def test_soft_variant_matches_plain_reference_with_the_same_coins():
    rows = F.normalize(torch.randn(200, 3, generator=torch.Generator().manual_seed(2)), dim=1)
    seed, order = visiting_order(5, 200)
    power = 4.0

    def joins(similarity, pixel, cluster):
        x = min(max(similarity, 0.0), 1.0)
        coin = float(hash_uniform(seed, cluster + 1, 200, torch.device("cpu"))[0, pixel])
        return coin * (x**power + (1 - x) ** power) < x**power

    labels = kwikcluster_soft(rows, power, generator=torch.Generator().manual_seed(5))
    assert torch.equal(labels, reference_kwikcluster(rows, order, joins))


def test_soft_variant_approaches_the_hard_threshold_for_large_power():
    rows, _ = noisy_clusters(batch=1, noise=0.3)
    hard = kwikcluster(rows, 0.5, generator=torch.Generator().manual_seed(0))
    soft = kwikcluster_soft(rows, power=1e4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(hard, soft)


def test_recovers_well_separated_clusters():
    rows, truth = noisy_clusters()
    labels = kwikcluster(rows, generator=torch.Generator().manual_seed(0))
    assert all(
        same_partition(image_labels, image_truth)
        for image_labels, image_truth in zip(labels, truth, strict=True)
    )


def test_batched_equals_one_image_at_a_time():
    rows, _ = noisy_clusters(noise=0.4)
    for scheme in (kwikcluster, kwikcluster_soft):
        batched = scheme(rows, generator=torch.Generator().manual_seed(3))
        for image_rows, image_labels in zip(rows, batched, strict=True):
            assert torch.equal(scheme(image_rows, generator=torch.Generator().manual_seed(3)), image_labels)


def test_same_seed_same_labels_and_other_seeds_differ():
    rows = F.normalize(torch.randn(500, 3, generator=torch.Generator().manual_seed(2)), dim=1)
    first, second = (kwikcluster(rows, generator=torch.Generator().manual_seed(5)) for _ in range(2))
    other = kwikcluster(rows, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_mask_leaves_pixels_out():
    rows, _ = noisy_clusters(batch=2, noise=0.3)
    mask = torch.rand(rows.shape[:2], generator=torch.Generator().manual_seed(0)) < 0.5
    labels = kwikcluster(rows, generator=torch.Generator().manual_seed(1), mask=mask)
    assert ((labels >= 0) == mask).all()
    for image in range(2):
        used = labels[image][mask[image]]
        assert torch.equal(used.unique(), torch.arange(int(used.max()) + 1))


def test_labels_are_numbered_in_pivot_order_and_cover_all_rows():
    rows = F.normalize(torch.randn(200, 6), dim=1)
    labels = kwikcluster(rows)
    assert labels.dtype == torch.int64 and labels.shape == (200,)
    assert labels[0] == 0 or labels.min() == 0
    assert torch.equal(labels.unique(), torch.arange(int(labels.max()) + 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_labels_on_cpu_and_gpu():
    rows, _ = noisy_clusters(batch=4, num_pixels=4096, dim=21, num_clusters=7, noise=0.3)
    for scheme in (kwikcluster, kwikcluster_soft):
        on_cpu = scheme(rows, generator=torch.Generator().manual_seed(3))
        on_gpu = scheme(rows.cuda(), generator=torch.Generator().manual_seed(3))
        assert torch.equal(on_cpu, on_gpu.cpu())


def assert_settings_keep_the_labels(monkeypatch, baseline: dict, changed: dict) -> None:
    """Both variants give a masked batch (different numbers of pixels per image) the same labels
    under the module settings ``changed`` as under ``baseline``, and the hard variant's labels are
    the one-pivot-at-a-time reference's."""
    module = importlib.import_module("dsc.rounding.kwikcluster")  # the module, not the function
    monkeypatch.setattr(compiled_cpu, "kernel", lambda dim, reference: None)  # the PyTorch passes
    rows, _ = noisy_clusters(batch=3, num_pixels=500, num_clusters=12, dim=12, noise=0.5)
    mask = torch.rand(rows.shape[:2], generator=torch.Generator().manual_seed(4)) < 0.7

    def labels_of(scheme):
        return scheme(rows, generator=torch.Generator().manual_seed(2), mask=mask)

    for name, value in baseline.items():
        monkeypatch.setattr(module, name, value)
    expected = {scheme: labels_of(scheme) for scheme in (kwikcluster, kwikcluster_soft)}
    for name, value in changed.items():
        monkeypatch.setattr(module, name, value)
    for scheme, labels in expected.items():
        assert torch.equal(labels_of(scheme), labels)
    _, order = visiting_order(2, 500)
    for image in range(3):
        kept = [pixel for pixel in order if mask[image, pixel]]
        reference = reference_kwikcluster(rows[image], kept, lambda s, i, c: s > 0.5)
        assert torch.equal(expected[kwikcluster][image][mask[image]], reference[mask[image]])


@pytest.mark.parametrize("block", [1, 3, 64])
@pytest.mark.parametrize("rounds", [1, 4])
def test_labels_do_not_depend_on_how_many_pivots_a_pass_settles(block, rounds, monkeypatch):
    """Blocks of candidate pivots, settled in few rounds (the undecided wait for the next pass),
    give the labels of one pivot at a time."""
    assert_settings_keep_the_labels(monkeypatch, {}, {"_MAX_BLOCK": block, "_SETTLE_ROUNDS": rounds})


@pytest.mark.parametrize("few_pivots", [0, 1000])
def test_labels_do_not_depend_on_chunks_or_the_comparison_layout(few_pivots, monkeypatch):
    """Pixels compared with the pivots a few rows at a time (one chunk left over), pivot-major or
    pixel-major, get the labels of one comparison over all pixels."""
    assert_settings_keep_the_labels(
        monkeypatch,
        {"_CPU_CHUNK_ELEMENTS": 2**40},
        {"_CPU_CHUNK_ELEMENTS": 97, "_FEW_PIVOTS": few_pivots},
    )


def test_every_pixel_is_its_own_pivot_above_any_similarity():
    rows = F.normalize(torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = kwikcluster(rows, threshold=1.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(labels.sort().values, torch.arange(50))
