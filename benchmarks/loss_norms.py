"""Forward + backward time of the spectral loss for each norm, exact and sampled, side by side:

    python benchmarks/loss_norms.py [--size 64] [--dim 16] [--batch 16] [--device all|cpu|cuda]

Inputs are realistic embeddings of built-in shapes images (see common.py).
"""

from __future__ import annotations

import argparse

import torch
from common import devices, print_table, shapes_embeddings, time_ms

from dsc.losses import spectral_loss

CASES = [
    ("frobenius", None, None),
    ("frobenius", None, 1024),
    ("nuclear", None, None),
    ("operator", None, None),
    ("schatten", 3.0, None),
    ("nuclear", None, 1024),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="all")
    args = parser.parse_args()
    embeddings, instances = shapes_embeddings(args.batch, args.size, args.dim, noise=0.3)
    print(f"{args.batch} images of {args.size}×{args.size}, d = {args.dim}")
    table = []
    for device in devices(args.device):
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        inputs = embeddings.to(device).requires_grad_()
        labels = instances.to(device)
        baseline = None
        for norm, p, sample_size in CASES:

            def step(inputs=inputs, labels=labels, norm=norm, p=p, sample_size=sample_size):
                loss = spectral_loss(inputs, labels, sample_size=sample_size, norm=norm, p=p)
                loss.backward()

            ms = time_ms(step, device, args.repeats)
            baseline = baseline or ms
            what = f"{norm}{'' if p is None else f' p={p:g}'}"
            table.append(
                [
                    what,
                    "exact" if sample_size is None else f"m={sample_size}",
                    name,
                    f"{ms:.2f}",
                    f"{ms / baseline:.2f}",
                ]
            )
    print_table(["norm", "pixels", "device", "ms fwd+bwd", "× frobenius exact"], table)


if __name__ == "__main__":
    main()
