"""kwikcluster_best, kwikcluster_refine and kmeans against brute-force objectives and known answers."""

import pytest
import torch
import torch.nn.functional as F
from synthetic_clusters import brute_force_objective, noisy_clusters, same_partition

from dsc.rounding import (
    estimate_num_clusters,
    kmeans,
    kwikcluster,
    kwikcluster_best,
    kwikcluster_refine,
    kwikcluster_soft,
    merge_small_clusters,
    refine,
    relabel_consecutive,
)
from dsc.rounding.hashing import mix32


def test_best_of_runs_picks_the_lowest_objective_per_image():
    rows, _ = noisy_clusters(batch=4, num_pixels=300, noise=0.45, seed=1)
    best = kwikcluster_best(rows, runs=5, generator=torch.Generator().manual_seed(2))
    # Each single run, seeded as kwikcluster_best seeds it.
    from dsc.rounding.hashing import draw_seed
    from dsc.rounding.kwikcluster import kwikcluster_labels

    seed = draw_seed(torch.Generator().manual_seed(2))
    mask = torch.ones(rows.shape[:2], dtype=torch.bool)
    singles = torch.stack(
        [
            brute_force_objective(
                rows, kwikcluster_labels(rows, mask, 0.5, int(mix32(torch.tensor(seed + r))), None)
            )
            for r in range(5)
        ]
    )
    torch.testing.assert_close(brute_force_objective(rows, best), singles.min(dim=0).values)
    assert (singles.max(dim=0).values > singles.min(dim=0).values).all(), (
        "the runs differ: the test has teeth"
    )


def test_refine_never_worse_than_kwikcluster_and_usually_better():
    rows, _ = noisy_clusters(batch=6, num_pixels=400, noise=0.5, seed=3)
    plain = kwikcluster(rows, generator=torch.Generator().manual_seed(0))
    refined = kwikcluster_refine(rows, generator=torch.Generator().manual_seed(0))
    before, after = brute_force_objective(rows, plain), brute_force_objective(rows, refined)
    assert (after <= before + 1e-6).all()
    assert (after < before).sum() >= 5


def test_refine_fixes_a_misassigned_pixel():
    rows = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0], [0.9, 0.1]]), dim=1)
    wrong = torch.tensor([[0, 0, 1, 1, 1]])
    fixed = refine(rows.unsqueeze(0), wrong, torch.ones(1, 5, dtype=torch.bool))
    assert fixed.tolist() == [[0, 0, 1, 1, 0]]


def test_kmeans_estimates_k_and_recovers_clusters():
    rows, truth = noisy_clusters(batch=3, num_pixels=800, num_clusters=5, noise=0.05, seed=4)
    mask = torch.ones(rows.shape[:2], dtype=torch.bool)
    assert estimate_num_clusters(rows, mask).tolist() == [5, 5, 5]
    labels = kmeans(rows, generator=torch.Generator().manual_seed(0))
    assert all(
        same_partition(image_labels, image_truth)
        for image_labels, image_truth in zip(labels, truth, strict=True)
    )


def test_spectrum_of_exact_embedding_gives_cluster_sizes():
    """Theorem 2.1: for one-hot rows, the eigenvalues of FᵀF are the cluster sizes."""
    sizes = [50, 30, 3]
    truth = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    rows = F.one_hot(truth, 6).float().unsqueeze(0)
    features = rows[0].double()
    eigenvalues = torch.linalg.eigvalsh(features.T @ features)
    assert sorted(eigenvalues.round().tolist())[-3:] == sorted(sizes)
    mask = torch.ones(1, 83, dtype=torch.bool)
    assert estimate_num_clusters(rows, mask, min_fraction=0.02).tolist() == [3]
    assert estimate_num_clusters(rows, mask, min_fraction=0.1).tolist() == [2]


def test_relabel_and_merge_small_clusters():
    labels = torch.tensor([[4, 4, -1, 7, 4, 9]])
    assert relabel_consecutive(labels).tolist() == [[0, 0, -1, 1, 0, 2]]
    rows = F.normalize(torch.tensor([[[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 3 + [[0.9, 0.2]]]), dim=-1)
    labels = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 2]])
    assert merge_small_clusters(rows, labels, min_size=2).tolist() == [[0, 0, 0, 0, 1, 1, 1, 0]]
    assert merge_small_clusters(rows, labels, min_size=4).tolist() == [[0, 0, 0, 0, 0, 0, 0, 0]]
    assert merge_small_clusters(rows, labels, min_size=9).tolist() == labels.tolist()  # no large cluster


SCHEMES = [kwikcluster, kwikcluster_soft, kwikcluster_best, kwikcluster_refine, kmeans]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_edge_cases(scheme):
    assert scheme(torch.zeros(0, 3)).shape == (0,)
    assert scheme(torch.ones(1, 1)).tolist() == [0]
    assert scheme(torch.ones(50, 1)).unique().tolist() == [0]  # d = 1, all identical
    assert scheme(F.normalize(torch.ones(40, 5), dim=1)).unique().tolist() == [0]
    assert scheme(torch.zeros(2, 0, 4)).shape == (2, 0)
    with pytest.raises(ValueError, match="non-finite"):
        scheme(torch.tensor([[1.0, 0.0], [float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"\(N, d\) or \(B, N, d\)"):
        scheme(torch.ones(2, 3, 4, 5))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_separates_clean_clusters(scheme):
    rows, truth = noisy_clusters(batch=2, num_pixels=500, noise=0.05, seed=6)
    labels = scheme(rows, generator=torch.Generator().manual_seed(0))
    assert labels.shape == truth.shape
    assert all(
        same_partition(image_labels, image_truth)
        for image_labels, image_truth in zip(labels, truth, strict=True)
    )


def test_relabel_keeps_label_zero_beside_left_out_pixels():
    labels = torch.tensor([[-1] * 50 + [0, 0, 2] + [-1] * 50])
    assert relabel_consecutive(labels).tolist() == [[-1] * 50 + [0, 0, 1] + [-1] * 50]


@pytest.mark.parametrize("num_pixels", [900, 3000])
def test_refine_recomputing_uncertain_pixels_equals_recomputing_every_pixel(num_pixels, monkeypatch):
    import sys

    from dsc.rounding.kwikcluster import kwikcluster_labels

    refine_module = sys.modules["dsc.rounding.refine"]
    rows, _ = noisy_clusters(batch=2, num_pixels=num_pixels, num_clusters=7, noise=0.2, seed=3)
    mask = torch.ones(rows.shape[:2], dtype=torch.bool)
    mask[1, :50] = False
    labels = kwikcluster_labels(rows, mask, 0.5, 0, None)
    partial_sweeps = []
    best_and_margins = refine_module.best_and_margins

    def counted(rows, *args):
        partial_sweeps.append(rows.shape[0] < num_pixels)  # one image's uncertain pixels
        return best_and_margins(rows, *args)

    monkeypatch.setattr(refine_module, "best_and_margins", counted)
    margins_used = refine_module.refine_sweeps(rows, labels, mask)
    assert any(partial_sweeps), "this scene exercises the sweeps over uncertain pixels"
    assert not torch.equal(margins_used, labels)
    monkeypatch.setattr(refine_module, "_FULL_SWEEP_SHARE", -1.0)  # every sweep recomputes every pixel
    assert torch.equal(margins_used, refine_module.refine_sweeps(rows, labels, mask))
