"""Milliseconds for the exact spectral loss, forward + backward, from raw network outputs
(unit normalisation included), side by side, with the memory-bandwidth floor beside them:

* normalise only: ``F.normalize`` forward + backward, the cost every variant pays;
* normalise only with ``dsc.ops.normalize.unit_normalize`` (per-channel squares on CPUs);
* plain torch: ``F.normalize`` then ``dsc.losses.spectral_loss`` (index_add; the tests'
  reference), and its ``torch.compile`` version with ``--compile``;
* dsc's CPU paths, NCHW and channels-last: the compiled C kernel (``dsc.losses.compiled_cpu``,
  what ``SpectralLoss().from_raw_outputs`` runs on a CPU with a C compiler) and PyTorch
  operations in cache-sized chunks (``dsc.losses.rows_in_cache``, the fallback), and beside them
  the two d × d matrix products the chunked path runs per pixel with a fresh gradient's write
  alone (``products_and_gradient``: what any CPU loss built from PyTorch operations pays at the
  least; not a loss);
* fused Triton: ``dsc.losses.fused.fused_spectral_frobenius`` (CUDA only), NCHW and channels-last,
  float32 and bfloat16 outputs.

    python benchmarks/loss_exact.py [--device cuda] [--batch 16] [--size 512] [--dim 21] [--compile]

The floor is the time to move the bytes the fused loss must move (read X and the labels twice,
write ∂X) at the copy bandwidth measured on the same device in the same run. The target on an
H100: ≤ 2 ms at 16 × 512², d = 21 (a straightforward index_add version takes 15.5 ms).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import print_table, shapes_embeddings, time_ms, time_side_by_side

from dsc.losses import compiled_cpu, rows_in_cache, spectral_loss
from dsc.losses.fused import fused_kernels_available, fused_spectral_frobenius
from dsc.ops.normalize import unit_normalize


def plain_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return spectral_loss(F.normalize(outputs, dim=1), labels, 255)


def forward_backward(loss_fn: Callable, outputs: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        outputs.grad = None
        loss_fn(outputs, labels).backward()

    return step


def products_and_gradient(outputs: torch.Tensor) -> None:
    """Only what any CPU loss built from PyTorch operations pays at the least: the two d × d
    matrix products per pixel (Gram FᵀF forward, F G backward) in the loss's chunks, and writing
    a fresh gradient. Not a loss."""
    rows = rows_in_cache._rows(outputs)
    chunks = range(0, rows.shape[1], rows_in_cache.CHUNK_PIXELS)
    for image in range(rows.shape[0]):
        gram = outputs.new_zeros(rows.shape[2], rows.shape[2])
        for start in chunks:
            gram += rows_in_cache._gram(rows[image, start : start + rows_in_cache.CHUNK_PIXELS])
        for start in chunks:
            rows[image, start : start + rows_in_cache.CHUNK_PIXELS] @ gram
    torch.empty_like(outputs).fill_(0.0)


def copy_bandwidth(device: torch.device, megabytes: int = 512) -> float:
    """Bytes per millisecond of a device-to-device copy (read + write counted)."""
    source = torch.empty(megabytes * 2**20 // 4, device=device)
    target = torch.empty_like(source)
    milliseconds = time_ms(lambda: target.copy_(source), device, repeats=9, warmup=2)
    return 2 * source.numel() * 4 / milliseconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--dim", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(plain torch)")
    args = parser.parse_args()

    device = torch.device(args.device)
    embeddings, instances = shapes_embeddings(args.batch, args.size, args.dim, noise=0.3)
    labels = instances.to(device)
    labels[:, :4] = 255  # a void band, as VOC has
    raw = (3.0 * embeddings).to(device)  # not unit length: the loss normalises
    layouts = {"NCHW": raw, "channels-last": raw.contiguous(memory_format=torch.channels_last)}

    variants: list[tuple[str, Callable, torch.Tensor]] = [
        ("normalise only (F.normalize)", lambda x, _: F.normalize(x, dim=1).sum(), raw),
        ("normalise only (dsc unit_normalize)", lambda x, _: unit_normalize(x).sum(), raw),
        ("plain torch (index_add)", plain_loss, raw),
    ]
    if device.type == "cpu":
        cpu_losses = {"rows in cache": rows_in_cache.exact_frobenius_from_raw}
        if compiled_cpu.kernel(args.dim) is not None:
            cpu_losses["compiled kernel"] = compiled_cpu.exact_frobenius_from_raw
        for name, loss_fn in cpu_losses.items():
            for layout, outputs in layouts.items():
                variants.append((f"dsc CPU {name}, {layout}", loss_fn, outputs))
    if args.compile:
        variants.append(("plain torch, torch.compile", torch.compile(plain_loss), raw))
    if fused_kernels_available(raw):
        for layout, outputs in layouts.items():
            variants.append((f"fused Triton, {layout}, float32", fused_spectral_frobenius, outputs))
            variants.append(
                (f"fused Triton, {layout}, bfloat16", fused_spectral_frobenius, outputs.bfloat16())
            )

    bandwidth = copy_bandwidth(device)
    rows = []

    def add_row(name: str, milliseconds: float, x: torch.Tensor) -> None:
        moved = 3 * x.numel() * x.element_size() + 2 * labels.numel() * labels.element_size()
        rows.append(
            [
                name,
                f"{milliseconds:.2f}",
                f"{moved / bandwidth:.2f}",
                f"{milliseconds * bandwidth / moved:.1f}",
            ]
        )

    steps, inputs = {}, {}
    for name, loss_fn, outputs in variants:
        inputs[name] = outputs.detach().clone(memory_format=torch.preserve_format).requires_grad_()
        steps[name] = forward_backward(loss_fn, inputs[name], labels)
    if device.type == "cpu":
        bound = layouts["channels-last"]
        inputs["d × d products + fresh gradient only"] = bound
        steps["d × d products + fresh gradient only"] = lambda: products_and_gradient(bound)
    for name, milliseconds in time_side_by_side(steps, device, args.repeats, warmup=2).items():
        add_row(name, milliseconds, inputs[name])

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"exact spectral loss, forward + backward, {args.batch} × {args.size}², d = {args.dim}, {name}")
    print(f"copy bandwidth {bandwidth / 1e6:.0f} GB/s; floor: 3 passes over X plus 2 over the labels")
    print(f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')} (importing dsc sets 1 unless set)")
    print_table(["variant", "ms", "floor ms", "× floor"], rows)


if __name__ == "__main__":
    main()
