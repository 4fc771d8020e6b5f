"""The exact squared-Frobenius spectral loss from raw network outputs in two Triton passes.

The loss needs, per image, only G = FᵀF (d × d), S = YᵀF (k × d) and the instance sizes n_c,
where F holds the unit-normalised rows of the network output X (paper, Section 2.2):

    ‖F Fᵀ − Y Yᵀ‖²_F = ‖G‖²_F − 2 ‖S‖²_F + Σ_c n_c².

``normalized_gram_and_sums`` computes (G, S, n_c) in one read of X and the labels: each program
normalises a tile of pixels in registers and accumulates Fᵀ F and (one-hot Y)ᵀ F with matrix
multiplies, then adds its partial sums into the image's totals. Its backward is one more read of
X: ∂/∂f_i = (∂G + ∂Gᵀ) f_i + ∂S[c_i], then through the normalisation, written straight into ∂X.
The loss formula itself stays in torch on these small matrices, so autograd composes the rest.

Labels must be instance ids in [0, ``max_instances``) or ``ignore_index`` (VOC, SBD, COCO and
Cityscapes maps from ``dsc.data`` are); other values fail a device-side assertion. On the CPU, or
without Triton, ``dsc.losses.spectral_loss`` of ``F.normalize(X)`` computes the same loss and is
the tests' reference. ``TRITON_INTERPRET=1`` runs these kernels on the CPU (slowly) for tests.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from dsc.losses.closed_form import mean_over_images, squared_frobenius

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only install: the plain torch loss is used
    triton = None

# F.normalize's floor on the norm: x / max(‖x‖, eps).
MAX_INSTANCES = 256


def fused_kernels_available(tensor: Tensor) -> bool:
    """Whether training uses the Triton kernels for ``tensor``: a CUDA tensor, with Triton."""
    return triton is not None and tensor.is_cuda


def triton_interpreter_enabled() -> bool:
    """Whether Triton's CPU interpreter runs the kernels (``TRITON_INTERPRET=1``, set before import):
    the tests call the kernels on CPU tensors this way."""
    return triton is not None and os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _load_normalized_tile(
        x_ptr, labels_ptr, image, start, num_pixels, dim, stride_b, stride_c, stride_p, ignore_index,
        max_instances: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        """A (BLOCK_N, BLOCK_D) tile of unit rows (zero rows for void and padding), its pixels'
        labels and validity, the raw norms, and the offsets of the tile's elements in X."""
        pixels = start + tl.arange(0, BLOCK_N)
        channels = tl.arange(0, BLOCK_D)
        in_image = pixels < num_pixels
        image = image.to(tl.int64)  # offsets of large batches exceed 2³¹
        labels = tl.load(labels_ptr + image * num_pixels + pixels, mask=in_image, other=ignore_index)
        valid = in_image & (labels != ignore_index) & (labels >= 0) & (labels < max_instances)
        offsets = image * stride_b + pixels[:, None].to(tl.int64) * stride_p + channels[None, :] * stride_c
        mask = valid[:, None] & (channels[None, :] < dim)
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        norm = tl.sqrt(tl.sum(x * x, axis=1))
        f = x / tl.maximum(norm, 1e-12)[:, None]
        return f, labels, valid, norm, offsets, mask

    @triton.jit
    def _gram_and_sums_kernel(
        x_ptr, labels_ptr, gram_ptr, sums_ptr, sizes_ptr, num_pixels, dim, stride_b, stride_c, stride_p,
        ignore_index, blocks_per_program, max_instances: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        image = tl.program_id(0)
        part = tl.program_id(1)
        gram = tl.zeros((BLOCK_D, BLOCK_D), dtype=tl.float32)
        sums = tl.zeros((max_instances, BLOCK_D), dtype=tl.float32)
        sizes = tl.zeros((max_instances,), dtype=tl.float32)
        instances = tl.arange(0, max_instances)
        for block in range(0, blocks_per_program):
            start = (part * blocks_per_program + block) * BLOCK_N
            f, labels, valid, _norm, _offsets, _mask = _load_normalized_tile(
                x_ptr, labels_ptr, image, start, num_pixels, dim, stride_b, stride_c, stride_p,
                ignore_index, max_instances, BLOCK_N, BLOCK_D,
            )  # fmt: skip
            one_hot = ((labels[:, None] == instances[None, :]) & valid[:, None]).to(tl.float32)
            gram += tl.dot(tl.trans(f), f, input_precision="ieee")
            sums += tl.dot(tl.trans(one_hot), f)
            sizes += tl.sum(one_hot, axis=0)
        channels = tl.arange(0, BLOCK_D)
        in_dim = channels < dim
        tl.atomic_add(
            gram_ptr + image * dim * dim + channels[:, None] * dim + channels[None, :],
            gram,
            mask=in_dim[:, None] & in_dim[None, :],
        )
        tl.atomic_add(
            sums_ptr + image * max_instances * dim + instances[:, None] * dim + channels[None, :],
            sums,
            mask=in_dim[None, :],
        )
        tl.atomic_add(sizes_ptr + image * max_instances + instances, sizes)

    @triton.jit
    def _gram_and_sums_backward_kernel(
        x_ptr, labels_ptr, grad_gram_ptr, grad_sums_ptr, grad_x_ptr, num_pixels, dim, stride_b, stride_c,
        stride_p, ignore_index, max_instances: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        image = tl.program_id(0)
        start = tl.program_id(1) * BLOCK_N
        f, labels, valid, norm, offsets, mask = _load_normalized_tile(
            x_ptr, labels_ptr, image, start, num_pixels, dim, stride_b, stride_c, stride_p,
            ignore_index, max_instances, BLOCK_N, BLOCK_D,
        )  # fmt: skip
        channels = tl.arange(0, BLOCK_D)
        in_dim = channels < dim
        gram_offsets = image * dim * dim + channels[:, None] * dim + channels[None, :]
        square_mask = in_dim[:, None] & in_dim[None, :]
        grad_gram = tl.load(grad_gram_ptr + gram_offsets, mask=square_mask, other=0.0)
        grad_gram_t = tl.load(
            grad_gram_ptr + image * dim * dim + channels[None, :] * dim + channels[:, None],
            mask=square_mask,
            other=0.0,
        )
        safe_labels = tl.where(valid, labels, 0)
        grad_rows = tl.load(
            grad_sums_ptr + image * max_instances * dim + safe_labels[:, None] * dim + channels[None, :],
            mask=mask,
            other=0.0,
        )
        # ∂/∂f_i = (∂G + ∂Gᵀ) f_i + ∂S[c_i]; then through f = x / max(‖x‖, eps).
        grad_f = tl.dot(f, grad_gram + grad_gram_t, input_precision="ieee") + grad_rows
        grad_f = tl.where(mask, grad_f, 0.0)
        along = tl.sum(grad_f * f, axis=1)
        unit = norm > 1e-12
        grad_x = tl.where(
            unit[:, None], (grad_f - along[:, None] * f) / tl.maximum(norm, 1e-12)[:, None], grad_f / 1e-12
        )
        store_mask = (start + tl.arange(0, BLOCK_N) < num_pixels)[:, None] & in_dim[None, :]
        tl.store(grad_x_ptr + offsets, grad_x.to(grad_x_ptr.dtype.element_ty), mask=store_mask)


def _geometry(outputs: Tensor) -> tuple[int, int, int, int, int, int]:
    """(batch, d, pixels, stride of image, of channel, of pixel) for NCHW or channels-last X."""
    batch, dim, height, width = outputs.shape
    stride_b, stride_c, stride_h, stride_w = outputs.stride()
    if stride_h != width * stride_w:
        raise ValueError("outputs must be contiguous in NCHW or channels-last memory format")
    return batch, dim, height * width, stride_b, stride_c, stride_w


_BLOCK_N = 64
_PROGRAMS_PER_IMAGE = 32


class _NormalizedGramAndSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, outputs: Tensor, labels: Tensor, ignore_index: int, max_instances: int):  # type: ignore[override]
        batch, dim, num_pixels, stride_b, stride_c, stride_p = _geometry(outputs)
        labels = labels.reshape(batch, num_pixels).contiguous()
        torch._assert_async(
            ((labels == ignore_index) | ((labels >= 0) & (labels < max_instances))).all(),
            f"fused spectral loss: instance ids must lie in [0, {max_instances}) or be {ignore_index}",
        )
        gram = outputs.new_zeros(batch, dim, dim, dtype=torch.float32)
        sums = outputs.new_zeros(batch, max_instances, dim, dtype=torch.float32)
        sizes = outputs.new_zeros(batch, max_instances, dtype=torch.float32)
        block_d = max(16, triton.next_power_of_2(dim))
        blocks = triton.cdiv(num_pixels, _BLOCK_N)
        programs = min(_PROGRAMS_PER_IMAGE, blocks)
        _gram_and_sums_kernel[(batch, programs)](
            outputs, labels, gram, sums, sizes, num_pixels, dim, stride_b, stride_c, stride_p, ignore_index,
            triton.cdiv(blocks, programs), max_instances=max_instances, BLOCK_N=_BLOCK_N, BLOCK_D=block_d,
            num_warps=8,
        )  # fmt: skip
        ctx.save_for_backward(outputs, labels)
        ctx.options = (ignore_index, max_instances, block_d)
        ctx.mark_non_differentiable(sizes)
        return gram, sums, sizes

    @staticmethod
    def backward(ctx, grad_gram: Tensor, grad_sums: Tensor, _grad_sizes: Tensor):  # type: ignore[override]
        outputs, labels = ctx.saved_tensors
        ignore_index, max_instances, block_d = ctx.options
        batch, dim, num_pixels, stride_b, stride_c, stride_p = _geometry(outputs)
        grad_outputs = torch.empty_like(outputs)  # same memory format, so the same strides
        _gram_and_sums_backward_kernel[(batch, triton.cdiv(num_pixels, _BLOCK_N))](
            outputs, labels, grad_gram.float().contiguous(), grad_sums.float().contiguous(), grad_outputs,
            num_pixels, dim, stride_b, stride_c, stride_p, ignore_index, max_instances=max_instances,
            BLOCK_N=_BLOCK_N, BLOCK_D=block_d,
        )  # fmt: skip
        return grad_outputs, None, None, None


def normalized_gram_and_sums(
    outputs: Tensor, labels: Tensor, ignore_index: int = 255, max_instances: int = MAX_INSTANCES
) -> tuple[Tensor, Tensor, Tensor]:
    """G = FᵀF (B, d, d), S = YᵀF (B, max_instances, d) and sizes (B, max_instances), float32,
    of F = the unit-normalised rows of ``outputs`` (B, d, H, W) over the non-void pixels of
    ``labels`` (B, H, W), with Triton kernels; differentiable in G and S."""
    if max_instances & (max_instances - 1) or max_instances < 16:
        raise ValueError(f"max_instances must be a power of two >= 16, got {max_instances}")
    return _NormalizedGramAndSums.apply(outputs, labels, ignore_index, max_instances)


def fused_spectral_frobenius(
    outputs: Tensor, labels: Tensor, ignore_index: int = 255, max_instances: int = MAX_INSTANCES
) -> Tensor:
    """``spectral_loss(F.normalize(outputs, dim=1), labels, ignore_index)`` (squared Frobenius, exact,
    mean over images with valid pixels) from raw outputs (B, d, H, W) in two fused passes."""
    gram, sums, sizes = normalized_gram_and_sums(outputs, labels, ignore_index, max_instances)
    pixels = sizes.sum(dim=1)
    return mean_over_images(squared_frobenius(gram, sums, sizes) / pixels.clamp(min=1).square(), pixels > 0)
