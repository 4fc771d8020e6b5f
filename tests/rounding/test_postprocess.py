"""cluster_sums against sums in float64, in one run and in several."""

import sys

import pytest
import torch

from dsc.rounding.postprocess import cluster_sums


@pytest.mark.parametrize("run_pixels", [7, 4096])
def test_cluster_sums_widen_per_run_sums(run_pixels, monkeypatch):
    monkeypatch.setattr(sys.modules["dsc.rounding.postprocess"], "_SUM_CHUNK_PIXELS", run_pixels)
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(3, 50, 4, generator=generator)
    labels = torch.randint(-1, 5, (3, 50), generator=generator)  # −1 counts nowhere
    sums, sizes = cluster_sums(rows, labels, 6, dtype=torch.float64)
    one_hot = torch.nn.functional.one_hot(labels.clamp(min=0), 6).double() * (labels >= 0).unsqueeze(-1)
    assert sums.dtype == sizes.dtype == torch.float64
    torch.testing.assert_close(sums, one_hot.transpose(1, 2) @ rows.double(), rtol=0, atol=1e-5)
    torch.testing.assert_close(sizes, one_hot.sum(dim=1))
    assert sizes[:, 5].sum() == 0  # a slot no pixel uses
    same_dtype = cluster_sums(rows, labels, 6)
    assert same_dtype[0].dtype == torch.float32
    torch.testing.assert_close(same_dtype[0].double(), sums, rtol=0, atol=1e-5)
