"""Milliseconds per image to round embeddings with KwikCluster, side by side on three scenes:

* numpy loop: a straightforward NumPy KwikCluster, one image and one pivot at a time;
* torch per pivot: the same loop in torch, one image at a time, a host sync per pivot;
* dsc: ``dsc.rounding.kwikcluster`` on the whole batch (blocks of pivots per pass);
* dsc + refine: ``dsc.rounding.kwikcluster_refine``.

Scenes (d = ``--dim``): ``clean6``, 256² pixels in 6 clean clusters; ``noisy40``, 512² pixels in ~40
clusters with 0.1 % scattered noise pixels (each a random direction, a pivot of its own); ``shapes``,
512² embeddings of the built-in shapes images (~54 clusters per image) with per-pixel noise.

    python benchmarks/rounding.py [--scenes clean6,noisy40,shapes] [--batch 1] [--device all|cpu|cuda]

The NumPy loop is timed first, then dsc's methods of a device in turn, one call of each per
round; medians are shown. Targets on the CPU against the NumPy loop: ≥ 3× on clean6 and
≥ 8× on noisy40; dsc + refine at most 3× dsc's KwikCluster (the last column). The GPU target:
≤ 1 ms per 512×512 image at d = 21 on an H100 (``--scenes shapes --batch 16``).
"""

from __future__ import annotations

import argparse

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


def clean_clusters(batch: int, size: int, dim: int, clusters: int, noise_fraction: float) -> torch.Tensor:
    """(B, size², d) unit rows: ``clusters`` vertical bands, each one random direction, and a
    ``noise_fraction`` of pixels scattered at random with random directions of their own."""
    generator = torch.Generator().manual_seed(0)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", default="clean6,noisy40,shapes")
    parser.add_argument("--dim", type=int, default=21)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="all")
    parser.add_argument("--no-per-pivot", action="store_true", help="skip the slow torch per-pivot loop")
    args = parser.parse_args()

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
