import pytest
import torch
import torch.nn.functional as F

from dsc.rounding import kwikcluster


def reference_kwikcluster(rows, order, threshold):
    """KwikCluster as written in Ailon et al., one pixel at a time in plain Python."""
    labels = [-1] * len(rows)
    cluster = 0
    for pivot in order:
        if labels[pivot] >= 0:
            continue
        for other in range(len(rows)):
            if labels[other] < 0 and (other == pivot or float(rows[other] @ rows[pivot]) > threshold):
                labels[other] = cluster
        cluster += 1
    return torch.tensor(labels)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9])
def test_matches_plain_reference(threshold):
    rows = F.normalize(torch.randn(300, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = kwikcluster(rows, threshold, generator=torch.Generator().manual_seed(7))
    order = torch.randperm(300, generator=torch.Generator().manual_seed(7)).tolist()
    assert torch.equal(labels, reference_kwikcluster(rows, order, threshold))


def test_recovers_well_separated_clusters():
    truth = torch.randint(0, 5, (1000,), generator=torch.Generator().manual_seed(0))
    rows = F.normalize(F.one_hot(truth, 8).float() + 0.05 * torch.randn(1000, 8), dim=1)
    labels = kwikcluster(rows, generator=torch.Generator().manual_seed(0))
    # A partition equal up to renaming: the pairs (label, truth) are a bijection.
    assert len(torch.unique(torch.stack([labels, truth]), dim=1).T) == 5 == len(labels.unique())


def test_same_seed_same_labels_and_other_seeds_differ():
    rows = F.normalize(torch.randn(500, 3, generator=torch.Generator().manual_seed(2)), dim=1)
    first, second = (kwikcluster(rows, generator=torch.Generator().manual_seed(5)) for _ in range(2))
    other = kwikcluster(rows, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_labels_are_numbered_in_pivot_order_and_cover_all_rows():
    rows = F.normalize(torch.randn(200, 6), dim=1)
    labels = kwikcluster(rows)
    assert labels.dtype == torch.int64 and labels.shape == (200,)
    assert labels.min() == 0
    assert torch.equal(labels.unique(), torch.arange(int(labels.max()) + 1))


def test_edge_cases():
    assert kwikcluster(torch.zeros(0, 3)).shape == (0,)
    assert kwikcluster(torch.ones(1, 1)).tolist() == [0]
    assert kwikcluster(torch.ones(50, 1)).unique().tolist() == [0]  # d = 1, all identical
    with pytest.raises(ValueError, match="non-finite"):
        kwikcluster(torch.tensor([[1.0, 0.0], [float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        kwikcluster(torch.ones(2, 3, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_labels_on_cpu_and_gpu():
    rows = F.normalize(torch.randn(4096, 21, generator=torch.Generator().manual_seed(0)), dim=1)
    rows = F.normalize(rows + F.one_hot(torch.arange(4096) % 7, 21), dim=1)
    on_cpu = kwikcluster(rows, generator=torch.Generator().manual_seed(3))
    on_gpu = kwikcluster(rows.cuda(), generator=torch.Generator().manual_seed(3))
    assert torch.equal(on_cpu, on_gpu.cpu())
