"""Shared helpers of the benchmark scripts: realistic inputs and a timer that syncs the device."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dsc.data import Shapes


def shapes_embeddings(
    batch: int, size: int, dim: int, noise: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings a trained network might give for built-in shapes images scaled to size × size:
    each instance a random unit direction in d dimensions plus per-pixel noise.
    Returns embeddings (B, d, H, W) float32, unit pixel vectors, and instances (B, H, W) int64."""
    generator = torch.Generator().manual_seed(seed)
    instances = Shapes(num_images=batch, seed=seed).instances.long()
    instances = F.interpolate(instances[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    directions = F.normalize(torch.randn(batch, 256, dim, generator=generator), dim=-1)
    rows = directions.gather(1, instances.flatten(1).unsqueeze(-1).expand(-1, -1, dim))
    rows = rows + noise * torch.randn(rows.shape, generator=generator)
    embeddings = F.normalize(rows, dim=-1).transpose(1, 2).reshape(batch, dim, size, size)
    return embeddings.contiguous(), instances


def time_ms(function: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``function()`` in milliseconds, synchronising a CUDA device."""
    return time_side_by_side({"": function}, device, repeats, warmup)[""]


def time_side_by_side(
    functions: dict[str, Callable[[], object]], device: torch.device, repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median wall time in milliseconds of each function, calling them in turn (one call of each
    per round), so that a machine's drift in speed reaches all of them alike."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    timings: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            function()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings[name].append((time.perf_counter() - started) * 1e3)
    return {name: sorted(values)[len(values) // 2] for name, values in timings.items()}


def devices(choice: str) -> list[torch.device]:
    if choice == "all":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    return [torch.device(choice)]


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(line, widths, strict=True)))
