"""Milliseconds per image to round embeddings with KwikCluster, three ways, side by side:

* numpy loop: a straightforward NumPy KwikCluster, one image and one pivot at a time;
* torch per pivot: the same loop in torch, one image at a time, a host sync per pivot;
* dsc batched: ``dsc.rounding.kwikcluster`` on the whole batch (no host sync per pivot).

    python benchmarks/rounding.py [--size 512] [--dim 21] [--batch 16] [--device all|cpu|cuda]

The GPU target: batched ≤ 1 ms per 512×512 image at d = 21 on an H100.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import devices, print_table, shapes_embeddings, time_ms

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--dim", type=int, default=21)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="all")
    args = parser.parse_args()

    embeddings, _ = shapes_embeddings(args.batch, args.size, args.dim, args.noise)
    rows_cpu = embeddings.flatten(2).transpose(1, 2).contiguous()  # (B, N, d)
    clusters = int(kwikcluster(rows_cpu[0], generator=torch.Generator().manual_seed(0)).max()) + 1
    print(f"{args.batch} images of {args.size}×{args.size}, d = {args.dim}, ~{clusters} clusters per image")

    numpy_rows = rows_cpu.numpy()
    numpy_ms = time_ms(
        lambda: [numpy_kwikcluster(r, 0.5, np.random.default_rng(0)) for r in numpy_rows],
        torch.device("cpu"),
        args.repeats,
    )
    table = [["numpy loop", "cpu", f"{numpy_ms / args.batch:.2f}", "1.00"]]
    for device in devices(args.device):
        rows = rows_cpu.to(device)
        per_pivot = time_ms(
            lambda rows=rows: [
                torch_per_pivot_kwikcluster(r, 0.5, torch.Generator().manual_seed(0)) for r in rows
            ],
            device,
            args.repeats,
        )
        batched = time_ms(
            lambda rows=rows: kwikcluster(rows, generator=torch.Generator().manual_seed(0)),
            device,
            args.repeats,
        )
        refined = time_ms(
            lambda rows=rows: kwikcluster_refine(rows, generator=torch.Generator().manual_seed(0)),
            device,
            args.repeats,
        )
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for label, ms in [
            ("torch per pivot", per_pivot),
            ("dsc batched", batched),
            ("dsc batched + refine", refined),
        ]:
            table.append([label, name, f"{ms / args.batch:.2f}", f"{numpy_ms / ms:.2f}"])
    print_table(["method", "device", "ms / image", "speed-up vs numpy"], table)


if __name__ == "__main__":
    main()
