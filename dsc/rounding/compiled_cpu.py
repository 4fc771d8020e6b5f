"""KwikCluster and its refinement on CPUs as compiled C kernels: what ``dsc.rounding.kwikcluster``
and ``dsc.rounding.refine`` run on a CPU where a C compiler is found (else, and on GPUs, their
batched PyTorch passes).

``kwikcluster.c`` labels one image per call, the images of a batch on
``torch.get_num_threads()`` threads. It makes the PyTorch passes' moves (blocks of candidate pivots
in visiting order, settled, then one sweep over the unclustered pixels), but without a tensor
operation's fixed cost, without copying the unclustered rows for a product, and stopping each
pixel's comparisons at the first group of pivots it agrees with. Its labels are those of the
PyTorch passes and of one pivot at a time for the same seed, except where a similarity lies within
float rounding of the threshold (the products are summed in another order).

``refine.c`` makes ``refine``'s sweeps for one image per call, with the same moves, the same
acceptance test and the same renumbering; it visits clusters in order of their bounds and stops a
pixel's search once no cluster left can win, where the PyTorch sweeps compute gains in chunks.
Its labels are the PyTorch sweeps' except where two gains lie within float rounding of each other.

``dsc.ops.c_kernels`` compiles the kernel for the embedding dimension and this machine the first
time a process needs it, and checks it once against the PyTorch passes on a small input; where no
compiler works or the check fails, ``kernel`` / ``refine_kernel`` say why in a warning and return
None.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import torch
from torch import Tensor

from dsc.ops import c_kernels
from dsc.rounding.hashing import stream_key_of

BLOCK = 64  # candidate pivots per pass (the kernel takes up to 256)
NONFINITE = "rounding got non-finite embeddings (NaN or inf): check the network's output"
_KERNELS: dict[tuple[str, int], ctypes.CDLL | None] = {}

# (rows, mask, threshold, seed, pixel_ids) → (B, N) labels: the PyTorch passes the kernel is checked against
Reference = Callable[[Tensor, Tensor, float, int, Tensor | None], Tensor]
# (rows, labels, mask, max_iterations) → (B, N) labels: the PyTorch sweeps ``refine.c`` is checked against
RefineReference = Callable[[Tensor, Tensor, Tensor, int], Tensor]


def _declare(library: ctypes.CDLL) -> None:
    pointer, integer = ctypes.c_void_p, ctypes.c_int64
    library.dsc_kwikcluster.argtypes = [
        pointer,  # rows
        integer,  # pixels
        integer,  # pixel stride
        integer,  # channel stride
        pointer,  # mask (uint8) or NULL
        pointer,  # ids (int64) or NULL
        integer,  # stream key
        ctypes.c_float,  # threshold
        integer,  # block
        integer,  # threads
        pointer,  # labels (int64), written
    ]
    library.dsc_kwikcluster.restype = integer


def _declare_refine(library: ctypes.CDLL) -> None:
    pointer, integer = ctypes.c_void_p, ctypes.c_int64
    # rows, pixels, pixel stride, channel stride, mask (uint8), labels in, labels out (int64), sweeps,
    # threads
    library.dsc_refine.argtypes = [
        pointer,
        integer,
        integer,
        integer,
        pointer,
        pointer,
        pointer,
        integer,
        integer,
    ]
    library.dsc_refine.restype = integer


def _built(source: str, dim: int, declare: Callable[[ctypes.CDLL], None], check: Callable[[ctypes.CDLL], str],
           fallback: str) -> ctypes.CDLL | None:  # fmt: skip
    """``source`` built for rows of ``dim`` channels and checked once per process, cached by the
    kernel's name (``source`` without ``.c``) and ``dim``."""
    key = (source.removesuffix(".c"), dim)
    if key not in _KERNELS:
        _KERNELS[key] = c_kernels.build_checked(
            "dsc.rounding", source, {"DIM": dim}, declare, check, fallback
        )
    return _KERNELS[key]


def kernel(dim: int, reference: Reference) -> ctypes.CDLL | None:
    """``kwikcluster.c`` for rows of ``dim`` channels, built and checked against ``reference``
    once per process; None (after one RuntimeWarning) where it cannot be built or disagrees."""
    return _built(
        "kwikcluster.c",
        dim,
        _declare,
        lambda library: _self_check(library, dim, reference),
        "KwikCluster runs its PyTorch passes instead, several times slower on small images",
    )


def refine_kernel(dim: int, reference: RefineReference) -> ctypes.CDLL | None:
    """``refine.c`` for rows of ``dim`` channels, built and checked against ``reference`` once
    per process; None (after one RuntimeWarning) where it cannot be built or disagrees."""
    return _built(
        "refine.c",
        dim,
        _declare_refine,
        lambda library: _refine_self_check(library, dim, reference),
        "refine runs its PyTorch sweeps instead, several times slower",
    )


def _check_input(dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Small noisy clusters to check a kernel on: rows (2, 300, dim), a mask and pixel ids."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(2, 9, dim, generator=generator), dim=-1)
    truth = torch.randint(0, 9, (2, 300), generator=generator)
    rows = centres.gather(1, truth.unsqueeze(-1).expand(-1, -1, dim))
    rows = torch.nn.functional.normalize(rows + 0.3 * torch.randn(rows.shape, generator=generator), dim=-1)
    return rows, torch.rand(2, 300, generator=generator) < 0.8, torch.arange(300) * 7


def _self_check(library: ctypes.CDLL, dim: int, reference: Reference) -> str:
    """'' if the kernel's labels equal the PyTorch passes' on a small masked batch, else why."""
    rows, mask, ids = _check_input(dim)
    expected = reference(rows, mask, 0.5, 11, ids)
    labels = kwikcluster_compiled(rows, mask, 0.5, 11, ids, library)
    return "" if torch.equal(labels, expected) else "self-check: its labels differ from the PyTorch passes'"


def _refine_self_check(library: ctypes.CDLL, dim: int, reference: RefineReference) -> str:
    """'' if the kernel refines a masked batch's random labels as the PyTorch sweeps do, else why."""
    rows, mask, _ = _check_input(dim)
    labels = torch.randint(0, 6, mask.shape, generator=torch.Generator().manual_seed(1))
    labels = torch.where(mask, labels, -1)
    expected = reference(rows, labels.clone(), mask, 10)
    refined = refine_compiled(rows, labels, mask, 10, library)
    return "" if torch.equal(refined, expected) else "self-check: its labels differ from the PyTorch sweeps'"


def _mask_pointers(mask: Tensor) -> tuple[Tensor, list[int | None]]:
    """Each image's (B, N) bool mask as a kernel reads it: the address of its row in a uint8 copy,
    or None (every pixel) where the mask is one True repeated (``as_batch``'s default: no pass over
    the pixels). Returns the copy too, which must outlive the kernel's calls."""
    repeated = all(stride == 0 or size == 1 for stride, size in zip(mask.stride(), mask.shape, strict=True))
    if repeated and mask.numel() and bool(mask[0, 0]):
        return mask, [None] * mask.shape[0]
    copy = mask.to(torch.bool).contiguous().view(torch.uint8)
    return copy, [image.data_ptr() for image in copy]


def _per_image(
    call: Callable[[int, int], int], batch: int, threads: int | None, name: str, pixels: int
) -> None:
    """call(image, threads) for every image of the batch, on ``c_kernels.run_in_threads``; each
    image's sweeps may use ``threads`` threads (default: torch's threads shared by the images). A
    kernel returns −1 where memory ran out (MemoryError) and −2 for a NaN or inf (ValueError)."""
    per_image = max(1, torch.get_num_threads() // batch) if threads is None else threads
    results = [0] * batch

    def run(image: int) -> None:
        results[image] = call(image, per_image)

    c_kernels.run_in_threads(run, batch)
    if -1 in results:
        raise MemoryError(f"{name}'s kernel could not allocate its buffers for {pixels} pixels")
    if -2 in results:
        raise ValueError(NONFINITE)


def kwikcluster_compiled(
    rows: Tensor,
    mask: Tensor,
    threshold: float,
    seed: int,
    pixel_ids: Tensor | None,
    library: ctypes.CDLL,
    block: int = BLOCK,
    threads: int | None = None,
) -> Tensor:
    """KwikCluster labels (B, N) int64 of CPU rows (B, N, d) float32 (any strides), mask (B, N)
    bool and optional pixel ids (N,) or (B, N) int64, by ``library`` (``kernel(d, …)``); a large
    image's sweeps run on ``threads`` threads (default: torch's threads shared by the images).
    Raises ValueError where a pixel to cluster has a NaN or infinite channel."""
    batch, num_pixels, _ = rows.shape
    rows = rows.float()
    mask, masks = _mask_pointers(mask)
    ids = None  # one (N,) row for every image, or a row per image
    if pixel_ids is not None:
        ids = pixel_ids.to(torch.int64).contiguous()
        ids = ids.expand(batch, num_pixels) if ids.dim() == 1 else ids
    labels = torch.empty(batch, num_pixels, dtype=torch.int64)
    stream_key = stream_key_of(seed, 0)
    _per_image(
        lambda image, image_threads: library.dsc_kwikcluster(
            rows[image].data_ptr(),
            num_pixels,
            rows.stride(1),
            rows.stride(2),
            masks[image],
            None if ids is None else ids[image].data_ptr(),
            stream_key,
            threshold,
            block,
            image_threads,
            labels[image].data_ptr(),
        ),
        batch,
        threads,
        "KwikCluster",
        num_pixels,
    )
    return labels


def refine_compiled(
    rows: Tensor,
    labels: Tensor,
    mask: Tensor,
    max_iterations: int,
    library: ctypes.CDLL,
    threads: int | None = None,
) -> Tensor:
    """``dsc.rounding.refine`` of CPU rows (B, N, d) float32 (any strides) and labels (B, N)
    int64 (0..k−1 inside ``mask``, (B, N) bool) by ``library`` (``refine_kernel(d, …)``); a large
    image's sweeps run on ``threads`` threads (default: torch's threads shared by the images)."""
    batch, num_pixels, _ = rows.shape
    rows = rows.float()
    mask, masks = _mask_pointers(mask)
    labels = labels.to(torch.int64).contiguous()
    refined = torch.empty_like(labels)
    _per_image(
        lambda image, image_threads: library.dsc_refine(
            rows[image].data_ptr(),
            num_pixels,
            rows.stride(1),
            rows.stride(2),
            masks[image],
            labels[image].data_ptr(),
            refined[image].data_ptr(),
            max_iterations,
            image_threads,
        ),
        batch,
        threads,
        "refine",
        num_pixels,
    )
    return refined
