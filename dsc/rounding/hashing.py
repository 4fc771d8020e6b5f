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


def hash_keys(seed: int, stream: int | Tensor, pixels: int | Tensor, device: torch.device) -> Tensor:
    """int64 keys in [0, 2³²), a pure function of (seed, stream, pixel id).

    pixels: a number N of pixels, whose ids are 0..N−1, giving (1, N) keys; or a tensor of int64
    pixel ids (such as ``position_ids``), giving keys of its shape (with a leading 1 for 1-D ids).
    stream: one int, or an int64 tensor that broadcasts with the pixel ids (a stream per key).
    """
    if isinstance(pixels, Tensor):
        pixel = pixels.to(device=device, dtype=torch.int64)
        pixel = pixel.unsqueeze(0) if pixel.dim() == 1 else pixel
    else:
        pixel = torch.arange(pixels, device=device, dtype=torch.int64).unsqueeze(0)
    if isinstance(stream, Tensor):
        stream_key = mix32(mix32(torch.tensor(seed, device=device)) ^ stream)
    else:
        stream_key = torch.tensor(stream_key_of(seed, stream), device=device)
    return mix32(stream_key ^ pixel)


def stream_key_of(seed: int, stream: int) -> int:
    """The key that ``hash_keys`` mixes with each pixel id for one (seed, stream): keys are
    mix32(stream key ^ pixel id)."""
    return int(mix32(mix32(torch.tensor(seed)) ^ stream))


def hash_uniform(seed: int, stream: int | Tensor, pixels: int | Tensor, device: torch.device) -> Tensor:
    """float64 uniform in [0, 1) for each pixel, from ``hash_keys`` (same ``pixels`` argument)."""
    return hash_keys(seed, stream, pixels, device).double() / 2.0**32


def position_ids(height: int, width: int, device: torch.device) -> Tensor:
    """(H·W,) int64 ids of the pixels of an H × W grid, row-major, that depend on (row, column)
    only, not on the grid's width: a pixel keeps its id, and so its random priority, when its image
    is padded into a wider batch. Rows and columns below 2¹⁶."""
    rows = torch.arange(height, device=device, dtype=torch.int64).unsqueeze(1)
    columns = torch.arange(width, device=device, dtype=torch.int64).unsqueeze(0)
    return ((rows << 16) | columns).flatten()


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A 31-bit seed from a CPU generator (or torch's global generator when None)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
