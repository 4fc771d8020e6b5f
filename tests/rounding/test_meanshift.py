"""Batched mean-shift against scikit-learn's MeanShift: the same partition up to relabelling."""

import numpy as np
import pytest
import torch
from sklearn.cluster import MeanShift
from sklearn.metrics import adjusted_rand_score

from dsc.contracts import NetworkOutputs
from dsc.rounding import Rounding, meanshift


def blobs(seed, clusters=4, per_cluster=25, dim=3, spread=0.25, distance=2.0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=generator) * distance
    sizes = torch.randint(5, per_cluster + 1, (clusters,), generator=generator)
    points = torch.cat(
        [
            c + spread * torch.randn(int(n), dim, generator=generator)
            for c, n in zip(centres, sizes, strict=True)
        ]
    )
    return points[torch.randperm(len(points), generator=generator)]


def same_partition(a, b):
    a, b = np.asarray(a), np.asarray(b)
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))  # a bijection between labels


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bandwidth", [0.5, 1.0])
def test_the_partition_is_scikit_learns(seed, bandwidth):
    points = blobs(seed, spread=0.15 + 0.05 * seed)
    expected = MeanShift(bandwidth=bandwidth).fit(points.double().numpy()).labels_
    labels = meanshift(points, bandwidth)
    assert same_partition(labels.numpy(), expected), adjusted_rand_score(expected, labels.numpy())
    assert sorted(set(labels.tolist())) == list(range(len(set(expected.tolist()))))


def test_a_batch_with_masks_gives_each_image_its_own_partition():
    images = [blobs(seed, clusters=3 + seed) for seed in range(3)]
    pixels = max(len(p) for p in images)
    rows = torch.zeros(3, pixels, 3)
    mask = torch.zeros(3, pixels, dtype=torch.bool)
    for index, points in enumerate(images):
        rows[index, : len(points)], mask[index, : len(points)] = points, True
    labels = meanshift(rows, 0.8, mask=mask)
    for index, points in enumerate(images):
        expected = MeanShift(bandwidth=0.8).fit(points.double().numpy()).labels_
        assert same_partition(labels[index, : len(points)].numpy(), expected)
        assert (labels[index, len(points) :] == -1).all()


def test_large_images_use_hashed_seeds_and_still_find_the_clusters():
    points = blobs(7, clusters=5, per_cluster=400, spread=0.1, distance=3.0)
    expected = MeanShift(bandwidth=0.6).fit(points.double().numpy()).labels_
    labels = meanshift(points, 0.6, max_seeds=64, max_points=512, generator=torch.Generator().manual_seed(0))
    assert adjusted_rand_score(expected, labels.numpy()) > 0.99


def test_the_partitioner_rounds_raw_embeddings_when_asked():
    raw = torch.zeros(1, 2, 4, 4)
    raw[0, 0, :, 2:] = 5.0  # two groups of pixels 5 apart; unit-normalised, the first is undefined
    rounding = Rounding(meanshift, embedding="raw")
    labels = rounding.partition(NetworkOutputs(raw, None))
    assert labels[0, :, :2].unique().numel() == 1 and labels[0, :, 2:].unique().numel() == 1
    assert labels[0, 0, 0] != labels[0, 0, 3]
    with pytest.raises(ValueError, match="embedding must be one of unit, raw"):
        Rounding(meanshift, embedding="normalised")
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        meanshift(torch.zeros(3, 2), 0.0)
