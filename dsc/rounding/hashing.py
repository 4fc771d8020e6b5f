"""Counter-based random numbers: the same values on every device, drawn where the data is.

A 32-bit integer hash of (seed, stream, pixel) replaces a stateful generator, so rounding on the
GPU needs no CPU permutation or transfer and matches the CPU bit for bit, and an image gets the
same numbers whether it is rounded alone or anywhere in a batch. Arithmetic stays
below 2⁶³ (32-bit values times a 27-bit constant), so int64 never overflows.
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_MULTIPLIER = 0x45D9F3B  # from a well-mixing 32-bit integer hash


def mix32(values: Tensor) -> Tensor:
    """Hash int64 values in [0, 2³²) to int64 values in [0, 2³²)."""
    values = values & _MASK32
    values = (((values >> 16) ^ values) * _MULTIPLIER) & _MASK32
    values = (((values >> 16) ^ values) * _MULTIPLIER) & _MASK32
    return (values >> 16) ^ values


def hash_keys(seed: int, stream: int, num_pixels: int, device: torch.device) -> Tensor:
    """(1, num_pixels) int64 keys in [0, 2³²), a pure function of (seed, stream, pixel)."""
    pixel = torch.arange(num_pixels, device=device, dtype=torch.int64).unsqueeze(0)
    stream_key = mix32(mix32(torch.tensor(seed, device=device)) ^ stream)
    return mix32(stream_key ^ pixel)


def hash_uniform(seed: int, stream: int, num_pixels: int, device: torch.device) -> Tensor:
    """(1, num_pixels) float64 uniform in [0, 1), from ``hash_keys``."""
    return hash_keys(seed, stream, num_pixels, device).double() / 2.0**32


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A 31-bit seed from a CPU generator (or torch's global generator when None)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
