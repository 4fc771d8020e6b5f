"""refine's pieces against brute force: each pixel's best cluster and margin, the clusters left out
of most pixels' gains, and sweeps that never raise the objective."""

import sys

import pytest
import torch
from synthetic_clusters import brute_force_objective, noisy_clusters

from dsc.rounding import kwikcluster, refine
from dsc.rounding.kwikcluster import kwikcluster_labels
from dsc.rounding.refine import best_and_margins

refine_module = sys.modules["dsc.rounding.refine"]


def brute_force_gains(rows, labels, num_clusters):
    """(m, K) gains 2 v·s_c − n_c, the own cluster without the pixel, in float64."""
    rows = rows.double()
    one_hot = torch.nn.functional.one_hot(labels, num_clusters).double()
    sums, sizes = one_hot.T @ rows, one_hot.sum(dim=0)
    gains = 2.0 * rows @ sums.T - sizes
    own_term = 2.0 * rows.square().sum(dim=1) - 1.0
    return gains - one_hot * own_term.unsqueeze(1)


def brute_force_best(gains, labels):
    """Stay unless another cluster gains strictly more; the first of equal others; the true margin."""
    others = gains.scatter(1, labels.unsqueeze(1), float("-inf"))
    first, index = others.max(dim=1)
    stay = gains.gather(1, labels.unsqueeze(1)).squeeze(1)
    best = torch.where(first > stay, index, labels)
    top = gains.gather(1, best.unsqueeze(1)).squeeze(1)
    second = gains.scatter(1, best.unsqueeze(1), float("-inf")).amax(dim=1)
    return best, top - second


def scene_with_tiny_clusters(seed=0, background=0):
    """Five large clusters, a dozen tiny ones (a few scattered pixels each) and, with
    ``background`` > 0, that many more pixels near the first cluster's centre: rows (m, d), labels."""
    rows, _ = noisy_clusters(batch=1, num_pixels=1500, num_clusters=5, noise=0.3, seed=seed)
    rows = rows[0]
    if background:
        generator = torch.Generator().manual_seed(seed)
        extra = torch.nn.functional.one_hot(torch.zeros(background, dtype=torch.long), rows.shape[1])
        extra = extra + 0.15 * torch.randn(background, rows.shape[1], generator=generator)
        rows = torch.cat([rows, torch.nn.functional.normalize(extra, dim=1)])
    mask = torch.ones(1, rows.shape[0], dtype=torch.bool)
    return rows, kwikcluster_labels(rows[None], mask, 0.5, seed, None)[0]


@pytest.mark.parametrize("background", [0, 6000])
@pytest.mark.parametrize("small_cluster_gain", [float("-inf"), 16.0, 200.0])
def test_best_and_margins_match_brute_force(small_cluster_gain, background, monkeypatch):
    monkeypatch.setattr(refine_module, "_SMALL_CLUSTER_GAIN", small_cluster_gain)
    monkeypatch.setattr(refine_module, "_GAIN_CHUNK_ELEMENTS", 4000)  # several chunks
    for seed in range(3):
        rows, labels = scene_with_tiny_clusters(seed, background)
        num_clusters = int(labels.max()) + 1
        one_hot = torch.nn.functional.one_hot(labels, num_clusters).float()
        sizes = one_hot.sum(dim=0)
        assert (sizes <= 3).sum() >= 3, "the scene has tiny clusters to leave out"
        targets, bias = 2.0 * one_hot.T @ rows, -sizes
        own_terms = 2.0 * rows.square().sum(dim=1) - 1.0
        max_norm = float(rows.norm(dim=1).amax())
        limits = targets.norm(dim=1) * max_norm + bias
        first, second = limits.topk(2).values
        assert bool(first > 2 * second) == bool(background), "a background has the largest bound"
        best, margins = best_and_margins(rows, labels, own_terms, targets, bias, max_norm)
        gains = brute_force_gains(rows, labels, num_clusters)
        expected_best, expected_margins = brute_force_best(gains, labels)
        assert torch.equal(best, expected_best)
        rounding = 1e-5 * len(rows)  # float32 gains of size ~len(rows)
        assert (margins <= expected_margins.float() + rounding).all()  # never larger than the truth
        assert (best != labels).any(), "some pixels move: the movers' search is exercised"
        if small_cluster_gain == float("-inf") and not background:
            torch.testing.assert_close(margins.double(), expected_margins, atol=rounding, rtol=1e-5)


def test_ties_keep_a_pixel_in_its_cluster():
    # Equal rows: a pixel of cluster 1 (three pixels) gains 2 from either cluster and stays; one of
    # cluster 0 (two pixels) gains 1 from staying, 3 from cluster 1, and moves.
    rows = torch.tensor([[1.0, 0.0]] * 5)
    labels = torch.tensor([0, 0, 1, 1, 1])
    gains = brute_force_gains(rows, labels, 2)
    assert gains[2, 0] == gains[2, 1] == 2.0
    targets, bias = torch.tensor([[4.0, 0.0], [6.0, 0.0]]), torch.tensor([-2.0, -3.0])
    best, margins = best_and_margins(rows, labels, torch.ones(5), targets, bias, 1.0)
    assert best.tolist() == [1, 1, 1, 1, 1] and margins.tolist() == [2.0, 2.0, 0.0, 0.0, 0.0]


def test_leaving_tiny_clusters_out_changes_no_label(monkeypatch):
    rows, _ = noisy_clusters(batch=3, num_pixels=2000, num_clusters=6, noise=0.4, seed=5)
    mask = torch.ones(rows.shape[:2], dtype=torch.bool)
    mask[2, ::7] = False
    labels = kwikcluster_labels(rows, mask, 0.5, 3, None)
    pruned = refine(rows, labels, mask)
    monkeypatch.setattr(refine_module, "_SMALL_CLUSTER_GAIN", float("-inf"))
    assert torch.equal(pruned, refine(rows, labels, mask))
    assert not torch.equal(pruned, labels)


def test_more_sweeps_never_raise_the_objective():
    rows, _ = noisy_clusters(batch=4, num_pixels=500, num_clusters=6, noise=0.6, seed=2)
    mask = torch.ones(rows.shape[:2], dtype=torch.bool)
    labels = kwikcluster(rows, generator=torch.Generator().manual_seed(1))
    objectives = torch.stack(
        [brute_force_objective(rows, refine(rows, labels, mask, sweeps)) for sweeps in range(6)]
    )
    assert (objectives[1:] <= objectives[:-1] + 1e-6).all()
    assert (objectives[-1] < objectives[0]).sum() >= 3
