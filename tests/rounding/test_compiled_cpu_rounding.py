"""The compiled CPU kernels of KwikCluster and refine against the one-pixel-at-a-time reference and
the PyTorch passes, on small scenes of every kind that benchmarks/rounding.py --sweep times."""

import importlib

import pytest
import torch
import torch.nn.functional as F
from test_kwikcluster import reference_kwikcluster, visiting_order
from torch.utils._python_dispatch import TorchDispatchMode

from dsc.ops import c_kernels
from dsc.rounding import compiled_cpu, kwikcluster, kwikcluster_refine
from dsc.rounding.hashing import draw_seed, position_ids
from dsc.rounding.kwikcluster import kwikcluster_passes
from dsc.rounding.refine import refine_sweeps

kwikcluster_module = importlib.import_module("dsc.rounding.kwikcluster")  # the module, not the function


def banded_scene(side, dim, clusters, noise, seed):
    """(1, side², dim) unit rows: ``clusters`` vertical bands of one random direction each
    (orthonormal where clusters ≤ dim) and a ``noise`` share of pixels in random directions, as
    the benchmark's ``clean_clusters``."""
    generator = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(clusters, dim, generator=generator), dim=-1)
    if clusters <= dim:
        directions = torch.linalg.qr(directions.T).Q.T
    band = (torch.arange(side) * clusters // side).repeat(side)
    rows = directions[band].clone()
    noisy = torch.rand(side * side, generator=generator) < noise
    rows[noisy] = F.normalize(torch.randn(int(noisy.sum()), dim, generator=generator), dim=-1)
    return rows.unsqueeze(0)


SCENES = [
    (side, dim, clusters, noise)
    for side, dim in ((20, 8), (24, 21))
    for clusters in (2, 6, 20, 60)
    for noise in (0.0, 0.01, 0.1)
]


def library(dim):
    found = compiled_cpu.kernel(dim, kwikcluster_module._passes_without_soft_coins)
    if found is None:
        pytest.skip("no working C compiler")
    return found


@pytest.mark.parametrize(("side", "dim", "clusters", "noise"), SCENES)
def test_kernel_gives_the_one_pivot_at_a_time_labels_on_every_kind_of_scene(side, dim, clusters, noise):
    rows = banded_scene(side, dim, clusters, noise, seed=clusters)
    mask = torch.ones(rows.shape[:2], dtype=torch.bool)
    seed, order = visiting_order(3, rows.shape[1])
    labels = compiled_cpu.kwikcluster_compiled(rows, mask, 0.5, seed, None, library(dim))
    assert torch.equal(labels[0], reference_kwikcluster(rows[0], order, lambda s, i, c: s > 0.5))
    assert torch.equal(labels, kwikcluster_passes(rows, mask, 0.5, seed, None))


@pytest.mark.parametrize("block", [1, 5, 64, 256])
def test_kernel_labels_do_not_depend_on_its_block_and_follow_masks_and_pixel_ids(block):
    rows = torch.cat([banded_scene(16, 21, 9, 0.2, seed) for seed in range(3)])
    mask = torch.rand(rows.shape[:2], generator=torch.Generator().manual_seed(1)) < 0.7
    ids = position_ids(16, 16, torch.device("cpu"))
    expected = kwikcluster_passes(rows, mask, 0.5, 17, None, ids)
    labels = compiled_cpu.kwikcluster_compiled(rows, mask, 0.5, 17, ids, library(21), block=block)
    assert torch.equal(labels, expected)
    assert ((labels >= 0) == mask).all()


def test_kernel_reads_rows_in_the_channel_major_layout_of_embedding_maps():
    maps = F.normalize(torch.randn(2, 8, 12, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    rows = maps.flatten(2).transpose(1, 2)  # a view: pixels 1 apart, channels H·W apart
    mask = torch.ones(rows.shape[:2], dtype=torch.bool)
    labels = compiled_cpu.kwikcluster_compiled(rows, mask, 0.5, 5, None, library(8))
    assert torch.equal(labels, kwikcluster_passes(rows.contiguous(), mask, 0.5, 5, None))


def test_kwikcluster_on_cpus_runs_the_kernel_and_equals_the_passes():
    rows = banded_scene(24, 21, 20, 0.01, seed=0)
    calls = []
    original = compiled_cpu.kwikcluster_compiled

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled_cpu, "kwikcluster_compiled", counted)
        labels = kwikcluster(rows, generator=torch.Generator().manual_seed(4))
    library(21)
    assert calls, "the compiled kernel ran"
    seed = draw_seed(torch.Generator().manual_seed(4))
    assert torch.equal(
        labels, kwikcluster_passes(rows, torch.ones_like(labels, dtype=torch.bool), 0.5, seed, None)
    )


def test_without_a_compiler_kwikcluster_and_refine_warn_once_and_run_their_pytorch_passes(monkeypatch):
    rows = banded_scene(16, 5, 4, 0.1, seed=2)
    expected = kwikcluster_refine(rows, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(compiled_cpu, "_KERNELS", {})
    monkeypatch.setenv("CC", "no-such-compiler-dsc")
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        labels = kwikcluster_refine(rows, generator=torch.Generator().manual_seed(1))
    assert torch.equal(labels, expected)
    assert compiled_cpu._KERNELS == {("kwikcluster", 5): None, ("refine", 5): None}


@pytest.mark.parametrize(("side", "dim", "clusters", "noise"), [s for s in SCENES if s[3] > 0])
def test_refine_kernel_makes_the_moves_of_the_pytorch_sweeps(side, dim, clusters, noise):
    rows = torch.cat([banded_scene(side, dim, clusters, noise, seed) for seed in range(2)])
    rows = F.normalize(
        rows + 0.4 * torch.randn(rows.shape, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    mask = torch.rand(rows.shape[:2], generator=torch.Generator().manual_seed(2)) < 0.9
    labels = kwikcluster_passes(rows, mask, 0.5, 9, None)
    found = compiled_cpu.refine_kernel(dim, refine_sweeps)
    if found is None:
        pytest.skip("no working C compiler")
    expected = refine_sweeps(rows, labels.clone(), mask, 10)
    refined = compiled_cpu.refine_compiled(rows, labels, mask, 10, found)
    assert torch.equal(refined, expected)


class _HostSyncs(TorchDispatchMode):
    """Counts the reads of a tensor's value by the host (``.item()``, ``int()``, ``bool()``)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_the_pytorch_passes_read_one_value_on_the_host_per_pass(monkeypatch):
    rows = torch.cat([banded_scene(24, 8, 60, 0.1, seed) for seed in range(4)])
    mask = torch.rand(rows.shape[:2], generator=torch.Generator().manual_seed(0)) < 0.9
    passes = []
    compact = kwikcluster_module._compact
    monkeypatch.setattr(kwikcluster_module, "_MAX_BLOCK", 8)  # many passes
    monkeypatch.setattr(kwikcluster_module, "_compact", lambda *a: passes.append(1) or compact(*a))
    with _HostSyncs() as syncs:
        kwikcluster_passes(rows, mask, 0.5, 3, None)
    assert len(passes) > 3
    # Each compaction reads the count of pixels left; before the first pass, the mask's all() and
    # the hash's stream key (a CPU value, no device synchronisation) are read.
    assert syncs.count == len(passes) + 2


@pytest.mark.parametrize("channel_major", [False, True])
def test_sweeps_split_over_threads_keep_the_labels(channel_major):
    """Kernels built to split sweeps of 64 pixels or more over threads, on pixel-major rows and on
    the channel-major rows of embedding maps (read through tiles), give the PyTorch labels."""
    try:
        kwik = c_kernels.build("dsc.rounding", "kwikcluster.c", {"DIM": 21, "THREAD_PIXELS": 64})
        refine_library = c_kernels.build("dsc.rounding", "refine.c", {"DIM": 21, "THREAD_PIXELS": 64})
    except RuntimeError:
        pytest.skip("no working C compiler")
    compiled_cpu._declare(kwik)
    compiled_cpu._declare_refine(refine_library)
    rows = torch.cat([banded_scene(40, 21, 12, 0.05, seed) for seed in range(2)])
    rows = F.normalize(
        rows + 0.3 * torch.randn(rows.shape, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    if channel_major:
        rows = rows.transpose(1, 2).contiguous().transpose(1, 2)  # pixels 1 apart, channels N apart
    mask = torch.rand(rows.shape[:2], generator=torch.Generator().manual_seed(1)) < 0.9
    labels = kwikcluster_passes(rows.contiguous(), mask, 0.5, 5, None)
    generator = torch.Generator().manual_seed(2)
    bands = (torch.arange(40) * 12 // 40).repeat(40).expand(2, -1)  # the scene's clusters
    wrong = torch.rand(mask.shape, generator=generator) < 0.05
    start = torch.where(wrong, torch.randint(0, 12, mask.shape, generator=generator), bands)
    start = torch.where(mask, start, -1)
    refined = refine_sweeps(rows.contiguous(), start.clone(), mask, 10)
    assert not torch.equal(refined, start), "the scene makes refine move pixels"
    for threads in (1, 3, 8):
        found = compiled_cpu.kwikcluster_compiled(rows, mask, 0.5, 5, None, kwik, threads=threads)
        assert torch.equal(found, labels)
        assert torch.equal(
            compiled_cpu.refine_compiled(rows, start, mask, 10, refine_library, threads), refined
        )


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("compiled", [True, False])
def test_non_finite_pixels_to_cluster_are_refused_and_pixels_left_out_are_not(value, compiled, monkeypatch):
    if not compiled:
        monkeypatch.setattr(compiled_cpu, "kernel", lambda dim, reference: None)
    rows = banded_scene(12, 8, 3, 0.0, seed=0)
    rows[0, 50, 3] = value
    with pytest.raises(ValueError, match="non-finite"):
        kwikcluster(rows, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(rows.shape[:2], dtype=torch.bool)
    mask[0, 50] = False
    labels = kwikcluster_refine(rows, generator=torch.Generator().manual_seed(0), mask=mask)
    assert labels[0, 50] == -1 and (labels[0][mask[0]] >= 0).all()
