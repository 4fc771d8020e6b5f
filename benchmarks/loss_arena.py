"""What each compared loss costs per training step, side by side: forward and backward from the
network's raw (B, d, H, W) outputs, as ``DeepSpectralClustering.training_step`` calls them, and the
rounding each is scored with.

    python benchmarks/loss_arena.py [--device cpu|cuda|all] [--batch 16] [--size 64] [--dim 16]

Inputs: embeddings of built-in shapes images (``common.shapes_embeddings``), so instance counts and
sizes are those of ``make train``; the default shape is its batch (16 × 16 × 64 × 64).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import torch
from common import devices, shapes_embeddings, time_side_by_side

from dsc.losses import ContrastiveLoss, DiscriminativeLoss, SpectralLoss
from dsc.rounding import kwikcluster, meanshift, round_embeddings


def step(loss: Callable[[torch.Tensor], torch.Tensor], raw: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        raw.grad = None
        loss(raw).backward()

    return run


def measure(device: torch.device, batch: int, size: int, dim: int, repeats: int) -> None:
    """Print the two tables for one device."""
    embeddings, instances = shapes_embeddings(batch, size, dim, noise=0.3)
    raw = (embeddings * 2.0).to(device).requires_grad_()  # raw outputs: not unit length
    labels = instances.to(device)
    generator = torch.Generator(device).manual_seed(0)
    losses = {
        "spectral, exact": lambda x: SpectralLoss().from_raw_outputs(x, labels),
        "spectral, 1024 sampled": lambda x: SpectralLoss(sample_size=1024).from_raw_outputs(
            x, labels, generator=generator
        ),
        "discriminative": lambda x: DiscriminativeLoss()(x, labels),
        "contrastive, 512 sampled": lambda x: ContrastiveLoss(sample_size=512)(x, labels, generator),
        "contrastive, 1024 sampled": lambda x: ContrastiveLoss(sample_size=1024)(x, labels, generator),
    }
    timings = time_side_by_side({name: step(loss, raw) for name, loss in losses.items()}, device, repeats)
    unit, detached = embeddings.to(device), raw.detach()
    roundings = {
        "kwikcluster (unit embeddings)": lambda: round_embeddings(unit, kwikcluster),
        "meanshift, bandwidth 1.5 (raw)": lambda: round_embeddings(
            detached, partial(meanshift, bandwidth=1.5)
        ),
    }
    rounding_timings = time_side_by_side(roundings, device, max(3, repeats // 2))
    reference = timings["spectral, exact"]
    print(
        f"\n{device.type}: one training step's loss, forward + backward, on {batch} × {dim} × {size} × {size}"
    )
    print(f"{'loss':<28} {'ms':>9} {'× spectral exact':>17}")
    for name, milliseconds in timings.items():
        print(f"{name:<28} {milliseconds:>9.1f} {milliseconds / reference:>17.2f}")
    print(f"\n{'rounding of the batch':<32} {'ms':>9} {'ms/image':>9}")
    for name, milliseconds in rounding_timings.items():
        print(f"{name:<32} {milliseconds:>9.1f} {milliseconds / batch:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for device in devices(args.device):
        measure(device, args.batch, args.size, args.dim, args.repeats)


if __name__ == "__main__":
    main()
