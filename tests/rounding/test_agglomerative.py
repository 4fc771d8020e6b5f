"""Agglomerative rounding: scikit-learn's clustering where every pixel is sampled, extended to the
rest by nearest means."""

import pytest
import torch
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score

from dsc.rounding import Rounding, agglomerative


def clustered_rows(
    pixels: int, clusters: int, noise: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(8)[:clusters]  # orthogonal: cosine distance 1 apart
    truth = torch.randint(0, clusters, (pixels,), generator=generator)
    rows = centres[truth] + noise * torch.randn(pixels, 8, generator=generator)
    return torch.nn.functional.normalize(rows, dim=1), truth


def test_with_every_pixel_sampled_it_is_scikit_learns_clustering():
    rows, _ = clustered_rows(300, 5, noise=0.25)
    labels = agglomerative(rows, distance_threshold=0.5, max_points=300)
    reference = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=0.5
    ).fit_predict(rows.double().numpy())
    assert len(set(reference)) > 1
    # The nearest-mean assignment may move a pixel at a cluster's edge; nearly all agree.
    assert adjusted_rand_score(reference, labels.numpy()) > 0.95


def test_a_sample_recovers_separated_clusters_and_leaves_the_mask_out():
    rows, truth = clustered_rows(5000, 6, noise=0.1)
    mask = torch.ones(5000, dtype=torch.bool)
    mask[:100] = False
    labels = agglomerative(rows, max_points=256, mask=mask, generator=torch.Generator().manual_seed(3))
    assert (labels[:100] == -1).all()
    assert adjusted_rand_score(truth[100:].numpy(), labels[100:].numpy()) == 1.0
    assert sorted(labels[100:].unique().tolist()) == list(range(6))


def test_an_image_is_rounded_alike_alone_and_in_a_batch():
    first, _ = clustered_rows(400, 4, noise=0.3, seed=1)
    second, _ = clustered_rows(400, 3, noise=0.3, seed=2)
    alone = agglomerative(second, max_points=100, generator=torch.Generator().manual_seed(5))
    batched = agglomerative(
        torch.stack([first, second]), max_points=100, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(batched[1], alone)


def test_as_a_rounding_of_embedding_maps():
    rows, truth = clustered_rows(16 * 16, 3, noise=0.05)
    maps = rows.T.reshape(1, 8, 16, 16)
    labels = Rounding(agglomerative)(maps)
    assert labels.shape == (1, 16, 16)
    assert adjusted_rand_score(truth.numpy(), labels.flatten().numpy()) == 1.0


@pytest.mark.parametrize(
    "kwargs, message", [({"distance_threshold": 0}, "cosine distance"), ({"max_points": 1}, "at least 2")]
)
def test_bad_arguments_are_reported(kwargs, message):
    with pytest.raises(ValueError, match=message):
        agglomerative(torch.ones(4, 2), **kwargs)
