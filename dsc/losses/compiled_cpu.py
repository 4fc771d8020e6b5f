"""The exact squared-Frobenius spectral loss from raw outputs on CPUs, as a compiled C kernel: what
``SpectralLoss.from_raw_outputs`` runs on a CPU where a C compiler is found (else
``dsc.losses.rows_in_cache``; on GPUs ``dsc.losses.fused``).

Per image, with f_i = x_i / max(‖x_i‖, ε) the unit rows of its n valid pixels (ε = 1e-12, as
``F.normalize``), G = Σ f_i f_iᵀ (d × d), s_c = Σ_{i∈c} f_i and n_c the instance sizes:

    loss = (‖G‖²_F − 2 Σ_c ‖s_c‖² + Σ_c n_c²) / n²,
    ∂loss/∂x_i = (g_i − f_i (f_i·g_i)) / ‖x_i‖ with g_i = 4 (G f_i − s_{c(i)}) / n²
    (g_i / ε without the projection where ‖x_i‖ < ε).

``exact_frobenius.c`` makes one pass over the outputs for G and the s_c and one for the gradient,
block by block of 64 pixels held in the L1 cache, with every product on SIMD vectors: no
intermediate tensor is written, and the outputs are read twice and the gradient written once,
which is the loss's memory-bandwidth floor. Pixels are split across ``torch.get_num_threads()``
threads. ``dsc.ops.c_kernels`` compiles the kernel for the embedding dimension and this machine
the first time a process needs it, and it is checked once against ``rows_in_cache`` on a small
input; if no compiler works or the check fails, ``kernel`` says why in a warning and returns None,
and the loss runs on ``rows_in_cache``.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dsc.losses import rows_in_cache
from dsc.losses.closed_form import mean_over_images, squared_frobenius
from dsc.ops import c_kernels
from dsc.ops.grouping import instance_slots

_LABEL_RANGE_SLOTS = 1024  # label ranges up to this are slots as they are (VOC: 0..255)
_KERNELS: dict[int, ctypes.CDLL | None] = {}


def _declare(library: ctypes.CDLL) -> None:
    pointer, integer = ctypes.c_void_p, ctypes.c_int64
    pixels_and_labels = [pointer, integer, integer, pointer, integer, integer, integer, integer]
    library.dsc_forward.argtypes = [*pixels_and_labels, pointer, pointer, pointer]
    library.dsc_backward.argtypes = [*pixels_and_labels, pointer, pointer, pointer]
    library.dsc_forward.restype = library.dsc_backward.restype = None


def kernel(dim: int) -> ctypes.CDLL | None:
    """The compiled kernel for embeddings of ``dim`` channels, built and checked once per process;
    None (after one RuntimeWarning) where it cannot be built or disagrees with ``rows_in_cache``."""
    if dim not in _KERNELS:
        _KERNELS[dim] = c_kernels.build_checked(
            "dsc.losses",
            "exact_frobenius.c",
            {"DIM": dim},
            _declare,
            lambda library: _self_check(library, dim),
            "the CPU loss runs on PyTorch operations instead (dsc.losses.rows_in_cache), a few times slower",
        )
    return _KERNELS[dim]


def _self_check(library: ctypes.CDLL, dim: int) -> str:
    """'' if the kernel's loss and gradient agree with ``rows_in_cache`` on a small input, else why."""
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(2, dim, 13, 11, generator=generator)
    labels = torch.randint(0, 5, (2, 13, 11), generator=generator)
    labels[:, :2] = 255
    expected_x, x = outputs.clone().requires_grad_(), outputs.clone().requires_grad_()
    with torch.enable_grad():  # also when the first loss is a validation loss
        expected = rows_in_cache.exact_frobenius_from_raw(expected_x, labels)
        expected.backward()
        loss = exact_frobenius_from_raw(x, labels, kernel_library=library)
        loss.backward()
    gradient_error = (x.grad - expected_x.grad).abs().max() / expected_x.grad.abs().max()
    if abs(loss.item() - expected.item()) <= 1e-4 * expected.item() and gradient_error <= 1e-3:
        return ""
    return f"self-check: loss {loss.item()} vs {expected.item()}, gradient error {gradient_error:.2e}"


def _pixel_and_channel_strides(outputs: Tensor) -> tuple[int, int]:
    """How far apart (in floats) an image's neighbouring pixels and channels lie in NCHW or
    channels-last contiguous ``outputs`` (B, d, H, W), pixels in row-major order."""
    rows = outputs.flatten(2)  # a view for both layouts
    return rows.stride(2), rows.stride(1)


_BLOCK_PIXELS = 64  # the kernel's block: ranges start at multiples of it, so blocks stay aligned


def _ranges(num_pixels: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` ranges of pixels [low, high) covering [0, num_pixels), the empty ones left out."""
    blocks = -(-num_pixels // _BLOCK_PIXELS)
    bounds = [min(blocks * part // parts * _BLOCK_PIXELS, num_pixels) for part in range(parts + 1)]
    return [(low, high) for low, high in itertools.pairwise(bounds) if high > low]


@dataclass(frozen=True)
class _Slots:
    """How the kernel reads instance ids: pixel i of image b adds to slot ids[b, i] − first unless
    ids[b, i] is ``void`` (then to none); slots 0..count − 1. A dataclass, not a tuple: autocast's
    ``custom_fwd`` rebuilds tuple arguments element by element, which a named tuple refuses."""

    ids: Tensor  # (B, n) int64, contiguous
    first: int
    count: int
    void: int


def _slots(labels: Tensor, ignore_index: int) -> _Slots:
    """The labels themselves where their range is small (no pass beyond their minimum and maximum),
    else compact slots from ``instance_slots``."""
    labels = labels.flatten(1).long().contiguous()
    low, high = (int(bound) for bound in torch.aminmax(labels)) if labels.numel() else (0, 0)
    if high - low < _LABEL_RANGE_SLOTS:
        return _Slots(labels, low, high - low + 1, ignore_index)
    slots, num_slots = instance_slots(labels, labels != ignore_index)
    return _Slots(slots, 0, num_slots, num_slots)


class _CompiledExactFrobenius(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # float32 under bf16 autocast
    def forward(ctx: Any, outputs: Tensor, slots: _Slots, library: ctypes.CDLL) -> tuple[Tensor, Tensor]:
        """outputs (B, d, H, W) float32, NCHW or channels-last contiguous. Returns the per-image
        losses (B,) and numbers of valid pixels (B,)."""
        batch, dim = outputs.shape[:2]
        tasks = [
            (image, low, high)
            for image in range(batch)
            for low, high in _ranges(slots.ids.shape[1], torch.get_num_threads())
        ]
        grams = torch.zeros(len(tasks), dim, dim, dtype=torch.float64)
        sums = torch.zeros(len(tasks), slots.count, dim, dtype=torch.float64)
        sizes = torch.zeros(len(tasks), slots.count, dtype=torch.float64)
        _in_threads(
            lambda task, *pixels: library.dsc_forward(
                *pixels, grams[task].data_ptr(), sums[task].data_ptr(), sizes[task].data_ptr()
            ),
            outputs,
            slots,
            tasks,
        )
        image_of_task = torch.tensor([image for image, _, _ in tasks])
        grams, sums, sizes = (
            part.new_zeros(batch, *part.shape[1:]).index_add_(0, image_of_task, part)
            for part in (grams, sums, sizes)
        )
        num_valid = sizes.sum(dim=1)
        ctx.save_for_backward(outputs, grams, sums, num_valid)
        ctx.slots, ctx.library, ctx.tasks = slots, library, tasks
        ctx.mark_non_differentiable(num_valid)
        squared = squared_frobenius(grams, sums, sizes) / num_valid.clamp(min=1.0).square()
        return squared.float(), num_valid

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx: Any, grad_losses: Tensor, _: Tensor) -> tuple[Tensor | None, None, None]:
        outputs, grams, sums, num_valid = ctx.saved_tensors
        coefficients = (4.0 * grad_losses.double() / num_valid.clamp(min=1.0).square()).view(-1, 1, 1)
        toward_gram = (coefficients * grams).float().contiguous()
        toward_sums = torch.zeros(len(grams), outputs.shape[1], ctx.slots.count + 1)  # a void column of 0
        toward_sums[:, :, :-1] = (coefficients * sums).transpose(1, 2)
        grad = torch.empty_like(outputs)
        pixel_stride = _pixel_and_channel_strides(outputs)[0]

        def run(task: int, *pixels: Any) -> None:
            image, low, _ = ctx.tasks[task]
            ctx.library.dsc_backward(
                *pixels,
                toward_gram[image].data_ptr(),
                toward_sums[image].data_ptr(),
                grad[image].data_ptr() + 4 * low * pixel_stride,
            )

        _in_threads(run, outputs, ctx.slots, ctx.tasks)
        return grad, None, None


def _in_threads(
    run: Callable[..., None], outputs: Tensor, slots: _Slots, tasks: list[tuple[int, int, int]]
) -> None:
    """run(task, *pixel arguments) for every task (image, first pixel, end pixel), the pixel
    arguments those the kernel's passes share; on threads (``c_kernels.run_in_threads``)."""
    pixel_stride, channel_stride = _pixel_and_channel_strides(outputs)

    def run_task(task: int) -> None:
        image, low, high = tasks[task]
        run(
            task,
            outputs[image].data_ptr() + 4 * low * pixel_stride,
            pixel_stride,
            channel_stride,
            slots.ids[image].data_ptr() + 8 * low,
            slots.first,
            slots.count,
            slots.void,
            high - low,
        )

    c_kernels.run_in_threads(run_task, len(tasks))


def exact_frobenius_from_raw(
    outputs: Tensor, labels: Tensor, ignore_index: int = 255, kernel_library: ctypes.CDLL | None = None
) -> Tensor:
    """Mean over images with valid pixels of ‖F Fᵀ − A‖²_F / n², F = F.normalize(outputs, dim=1),
    on the compiled kernel (``kernel(d)``, or ``kernel_library`` when given; RuntimeError if none).

    outputs: (B, d, H, W) raw embeddings on the CPU (any memory format; NCHW and channels-last are
    read in place); labels: (B, H, W) integer instance ids, ``ignore_index`` void. A scalar, 0 with
    a zero gradient when no pixel is valid.
    """
    library = kernel(outputs.shape[1]) if kernel_library is None else kernel_library
    if library is None:
        raise RuntimeError(
            "the compiled CPU spectral loss could not be built on this machine (see the warning)"
        )
    outputs = outputs.float()
    if not (outputs.is_contiguous() or outputs.is_contiguous(memory_format=torch.channels_last)):
        outputs = outputs.contiguous()
    losses, num_valid = _CompiledExactFrobenius.apply(outputs, _slots(labels, ignore_index), library)
    return mean_over_images(losses, num_valid > 0)
