"""Milliseconds per image to round embeddings with KwikCluster, side by side on three scenes or a grid:

* numpy loop: a straightforward NumPy KwikCluster, one image and one pivot at a time;
* torch per pivot: the same loop in torch, one image at a time, a host sync per pivot;
* dsc: ``dsc.rounding.kwikcluster`` on the whole batch (on a CPU its compiled kernel; on a GPU
  batched passes, blocks of pivots per pass);
* dsc + refine: ``dsc.rounding.kwikcluster_refine``.

Scenes (d = ``--dim``): ``clean6``, 256² pixels in 6 clean clusters; ``noisy40``, 512² pixels in ~40
clusters with 0.1 % scattered noise pixels (each a random direction, a pivot of its own); ``shapes``,
512² embeddings of the built-in shapes images (~54 clusters per image) with per-pixel noise.

    python benchmarks/rounding.py [--scenes clean6,noisy40,shapes] [--batch 1] [--device all|cpu|cuda]
    python benchmarks/rounding.py --sweep [--device cpu|cuda] [--seeds 3]

``--sweep`` times the NumPy loop, dsc's KwikCluster and dsc + refine over a grid of clean scenes
(``clean_clusters``): sizes 128², 256², 512², 1024²; 2, 6, 20, 60, 200 clusters (vertical bands,
each a random direction: orthonormal where there are no more clusters than dimensions, else some
agree and KwikCluster merges them); 0, 0.1 % and 1 % noise pixels; d = 8 and 21; ``--seeds``
generator seeds per cell. Each cell's speed-up and refine ratio are the worst over its seeds; the
worst cells are printed last, with the targets. On a GPU (``--device cuda``) each seed is a batch of
``--batch`` images (default 16) and the table gives milliseconds per image.

The NumPy loop is timed first, then dsc's methods of a device in turn, one call of each per
round; medians are shown. Targets on the CPU, over the grid: KwikCluster ≥ 3× the NumPy loop in
every cell of ≥ 256² pixels and ≥ 8× in every cell with ≥ 20 clusters at ≥ 512²; dsc + refine at
most 3× dsc's KwikCluster. The GPU target: ≤ 1 ms per 512×512 image at batch 16
(``--sweep --device cuda``; ``--scenes shapes --batch 16`` for embeddings of the shapes images).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import devices, print_table, shapes_embeddings, time_ms, time_side_by_side

from dsc.rounding import kwikcluster, kwikcluster_refine


def numpy_kwikcluster(rows: np.ndarray, threshold: float, rng: np.random.Generator) -> np.ndarray:
    labels = np.full(len(rows), -1)
    cluster = 0
    for pivot in rng.permutation(len(rows)):
        if labels[pivot] >= 0:
            continue
        joins = (labels < 0) & (rows @ rows[pivot] > threshold)
        joins[pivot] = True
        labels[joins] = cluster
        cluster += 1
    return labels


def torch_per_pivot_kwikcluster(
    rows: torch.Tensor, threshold: float, generator: torch.Generator
) -> torch.Tensor:
    labels = torch.full((len(rows),), -1, dtype=torch.int64, device=rows.device)
    order = torch.randperm(len(rows), generator=generator).to(rows.device)
    cluster, position = 0, 0
    while position < len(rows):
        unclustered = labels[order[position:]] < 0
        if not bool(unclustered.any()):  # a host sync per pivot
            break
        position += int(unclustered.to(torch.uint8).argmax())
        pivot = order[position]
        joins = (rows @ rows[pivot] > threshold) & (labels < 0)
        joins[pivot] = True
        labels[joins] = cluster
        cluster += 1
        position += 1
    return labels


def clean_clusters(
    batch: int, size: int, dim: int, clusters: int, noise_fraction: float, seed: int = 0
) -> torch.Tensor:
    """(B, size², d) unit rows: ``clusters`` vertical bands, each one random direction, and a
    ``noise_fraction`` of pixels scattered at random with random directions of their own."""
    generator = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(batch, clusters, dim, generator=generator), dim=-1)
    if clusters <= dim:  # orthonormal: no two clusters agree
        directions = torch.linalg.qr(directions.transpose(1, 2)).Q.transpose(1, 2)
    band = torch.arange(size) * clusters // size
    cluster_of = band.repeat(size).expand(batch, -1)  # (B, size²): columns split into bands
    rows = directions.gather(1, cluster_of.unsqueeze(-1).expand(-1, -1, dim)).clone()
    noisy = torch.rand(batch, size * size, generator=generator) < noise_fraction
    rows[noisy] = F.normalize(torch.randn(int(noisy.sum()), dim, generator=generator), dim=-1)
    return rows


def scene_rows(scene: str, batch: int, dim: int) -> torch.Tensor:
    if scene == "clean6":
        return clean_clusters(batch, 256, dim, 6, 0.0)
    if scene == "noisy40":
        return clean_clusters(batch, 512, dim, 40, 0.001)
    if scene == "shapes":
        embeddings, _ = shapes_embeddings(batch, 512, dim, 0.15)
        return embeddings.flatten(2).transpose(1, 2).contiguous()
    raise ValueError(f"unknown scene {scene!r}: clean6, noisy40 or shapes")


SWEEP_SIZES = (128, 256, 512, 1024)
SWEEP_CLUSTERS = (2, 6, 20, 60, 200)
SWEEP_NOISE = (0.0, 0.001, 0.01)
SWEEP_DIMS = (8, 21)


def time_cell(size: int, clusters: int, noise: float, dim: int, seed: int, device: torch.device,
              batch: int, repeats: int) -> tuple[float, float, float, int]:  # fmt: skip
    """Median milliseconds per image of the NumPy loop (one image), dsc's KwikCluster and dsc +
    refine on one scene, and how many clusters KwikCluster found in its first image.

    The NumPy loop is timed first, on its own (``repeats`` calls, fewer where they take over 2 s in
    all, after an untimed call where one takes under 200 ms), then dsc's methods side by side (one
    call of each per round, after two untimed rounds). A pause before each part lets the other's
    threads stop spinning; the untimed calls wake the cores the pause let idle."""
    rows_cpu = clean_clusters(batch, size, dim, clusters, noise, seed)
    numpy_rows, rows = rows_cpu[0].numpy(), rows_cpu.to(device)
    methods = {
        "kwikcluster": lambda: kwikcluster(rows, generator=torch.Generator().manual_seed(seed)),
        "refine": lambda: kwikcluster_refine(rows, generator=torch.Generator().manual_seed(seed)),
    }

    def numpy_loop() -> np.ndarray:
        return numpy_kwikcluster(numpy_rows, 0.5, np.random.default_rng(seed))

    time.sleep(0.2)  # torch's threads stop spinning
    numpy_times = [time_ms(numpy_loop, torch.device("cpu"), 1, warmup=0)]
    if numpy_times[0] < 200:  # the first call woke the cores: time it again
        numpy_times = []
    while len(numpy_times) < repeats and sum(numpy_times) < 2000:
        numpy_times.append(time_ms(numpy_loop, torch.device("cpu"), 1, warmup=0))
    time.sleep(0.2)  # NumPy's BLAS threads stop spinning
    times = time_side_by_side(methods, device, repeats, warmup=2)
    found = int(kwikcluster(rows[0], generator=torch.Generator().manual_seed(seed)).max()) + 1
    numpy_ms = sorted(numpy_times)[len(numpy_times) // 2]
    return numpy_ms, times["kwikcluster"] / batch, times["refine"] / batch, found


def sweep(args: argparse.Namespace) -> None:
    device = torch.device(args.device if args.device != "all" else "cpu")
    batch = args.batch if args.batch_given else (16 if device.type == "cuda" else 1)
    sizes = [int(value) for value in args.sizes.split(",")]
    table, compact, cells = [], [], []
    for size in sizes:
        for noise in SWEEP_NOISE:
            for dim in SWEEP_DIMS:
                compact_row = [f"{size}²", f"{100 * noise:g} %", str(dim)]
                for clusters in SWEEP_CLUSTERS:
                    runs = [time_cell(size, clusters, noise, dim, seed, device, batch, args.repeats)
                            for seed in range(args.seeds)]  # fmt: skip
                    numpy_ms, kwik_ms, refine_ms, found = (
                        sorted(v)[len(v) // 2] for v in zip(*runs, strict=True)
                    )
                    speed_up = min(n / k for n, k, _, _ in runs)
                    refine_ratio = max(r / k for _, k, r, _ in runs)
                    cells.append((size, clusters, noise, dim, speed_up, refine_ratio, kwik_ms))
                    table.append([f"{size}²", str(clusters), f"{100 * noise:g} %", str(dim), str(found),
                                  f"{numpy_ms:.2f}", f"{kwik_ms:.3f}", f"{refine_ms:.3f}",
                                  f"{speed_up:.1f}", f"{refine_ratio:.2f}"])  # fmt: skip
                    compact_row.append(f"{speed_up:.1f}× / {refine_ratio:.1f}")
                    print("  ".join(table[-1]), flush=True)
                compact.append(compact_row)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {torch.get_num_threads()} threads"
    )
    print(f"\n{name}, batch {batch}, {args.seeds} seeds per cell, torch {torch.__version__}")
    print_table(["size", "clusters", "noise", "d", "found", "numpy ms", "dsc ms/image", "refine ms/image",
                 "speed-up (worst seed)", "refine / dsc (worst seed)"], table)  # fmt: skip
    print("\nspeed-up vs the NumPy loop / refine ÷ KwikCluster, worst seed, per cell (markdown):")
    print("| size | noise | d | " + " | ".join(f"{c} clusters" for c in SWEEP_CLUSTERS) + " |")
    print("|---" * (3 + len(SWEEP_CLUSTERS)) + "|")
    for row in compact:
        print("| " + " | ".join(row) + " |")

    def worst(selected: list, key: int, largest: bool = False) -> str:
        if not selected:
            return "no cell"
        cell = (max if largest else min)(selected, key=lambda c: c[key])
        size, clusters, noise, dim = cell[:4]
        return f"{cell[key]:.2f} at {size}², {clusters} clusters, {100 * noise:g} % noise, d = {dim}"

    large = [c for c in cells if c[0] >= 256]
    many = [c for c in cells if c[0] >= 512 and c[1] >= 20]
    print(f"\nworst speed-up, cells of >= 256² pixels (target >= 3): {worst(large, 4)}")
    print(f"worst speed-up, >= 20 clusters at >= 512² (target >= 8): {worst(many, 4)}")
    print(f"worst refine / KwikCluster, every cell (target <= 3): {worst(cells, 5, largest=True)}")
    if device.type == "cuda":
        at_512 = [c for c in cells if c[0] == 512]
        print(f"slowest KwikCluster ms per 512² image (target <= 1): {worst(at_512, 6, largest=True)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", default="clean6,noisy40,shapes")
    parser.add_argument("--dim", type=int, default=21)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="all")
    parser.add_argument("--no-per-pivot", action="store_true", help="skip the slow torch per-pivot loop")
    parser.add_argument("--sweep", action="store_true", help="time the grid of scenes instead")
    parser.add_argument("--seeds", type=int, default=3, help="--sweep: generator seeds per cell")
    parser.add_argument("--sizes", default=",".join(map(str, SWEEP_SIZES)), help="--sweep: image sides")
    args = parser.parse_args()
    args.batch_given = any(arg.startswith("--batch") for arg in sys.argv[1:])
    if args.sweep:
        sweep(args)
        return

    table = []
    for scene in args.scenes.split(","):
        rows_cpu = scene_rows(scene, args.batch, args.dim)
        clusters = int(kwikcluster(rows_cpu[0], generator=torch.Generator().manual_seed(0)).max()) + 1
        name = f"{scene} ({clusters} clusters)"
        numpy_rows = rows_cpu.numpy()

        def numpy_loop(numpy_rows: np.ndarray = numpy_rows) -> list[np.ndarray]:
            return [numpy_kwikcluster(r, 0.5, np.random.default_rng(0)) for r in numpy_rows]

        # The NumPy loop is timed on its own: NumPy's BLAS threads keep spinning after each call and
        # would slow torch's threads on the same cores if the two took turns.
        numpy_ms = time_ms(numpy_loop, torch.device("cpu"), args.repeats)
        table.append([name, "numpy loop", "cpu", f"{numpy_ms / args.batch:.2f}", "1.00", ""])
        for device in devices(args.device):
            rows = rows_cpu.to(device)
            methods = {
                "dsc kwikcluster": lambda rows=rows: kwikcluster(
                    rows, generator=torch.Generator().manual_seed(0)
                ),
                "dsc + refine": lambda rows=rows: kwikcluster_refine(
                    rows, generator=torch.Generator().manual_seed(0)
                ),
            }
            if not args.no_per_pivot:
                methods["torch per pivot"] = lambda rows=rows: [
                    torch_per_pivot_kwikcluster(r, 0.5, torch.Generator().manual_seed(0)) for r in rows
                ]
            timings = time_side_by_side(methods, device, args.repeats, warmup=2)
            device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
            for label, ms in timings.items():
                per_image, speed_up = f"{ms / args.batch:.2f}", f"{numpy_ms / ms:.2f}"
                versus_plain = f"{ms / timings['dsc kwikcluster']:.2f}"
                table.append([name, label, device_name, per_image, speed_up, versus_plain])
    threads = torch.get_num_threads()
    print(f"batch {args.batch}, d = {args.dim}, torch {torch.__version__}, {threads} CPU threads")
    print_table(["scene", "method", "device", "ms / image", "speed-up vs numpy", "× dsc kwikcluster"], table)


if __name__ == "__main__":
    main()
