"""The exact squared-Frobenius spectral loss from raw outputs on CPUs, in chunks of pixel rows that
stay in the cache: what ``SpectralLoss.from_raw_outputs`` runs on a CPU (the GPU runs
``dsc.losses.fused``).

Per image, with f_i = x_i / max(‖x_i‖, ε) the unit rows of its n valid pixels (ε = 1e-12, as
``F.normalize``), G = Σ f_i f_iᵀ (d × d), s_c = Σ_{i∈c} f_i and n_c the instance sizes:

    loss = (‖G‖²_F − 2 Σ_c ‖s_c‖² + Σ_c n_c²) / n²,
    ∂loss/∂f_i = 4 (G f_i − s_{c(i)}) / n²,
    ∂loss/∂x_i = (g_i − f_i (f_i·g_i)) / ‖x_i‖ for g_i = ∂loss/∂f_i (g_i / ε where ‖x_i‖ < ε).

The forward pass reads the outputs once (G and s_c accumulate chunk by chunk) and keeps each
pixel's 1/‖x_i‖; the backward pass reads the outputs once more and writes the gradient, recomputing
each chunk's unit rows from those scales. Only the gradient is a full-size tensor: the plain path's
normalised copy, its products and index_add buffers (each a fresh tensor as large as the outputs)
never exist. Same value and gradient as ``spectral_loss(F.normalize(outputs, dim=1), labels)``, to
float32 rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dsc.losses.closed_form import mean_over_images, squared_frobenius
from dsc.ops.grouping import instance_slots
from dsc.ops.normalize import NORM_FLOOR

CHUNK_PIXELS = 1 << 15  # 32768 rows of d floats: ~2.6 MiB at d = 21, within a core's L2/L3 share
GRAM_BLOCKS = 4


def _rows(outputs: Tensor) -> Tensor:
    """(B, d, H, W) → (B, n, d) pixel rows (a view for channels-last outputs, else a strided view)."""
    return outputs.flatten(2).transpose(1, 2)


def _chunks(num_pixels: int) -> range:
    return range(0, num_pixels, CHUNK_PIXELS)


def _gram(unit: Tensor) -> Tensor:
    """fᵀf (d, d) of unit rows (m, d): as four blocks' products summed when m allows, which CPU
    BLAS runs in parallel where one tall product of 21 columns runs at half the speed."""
    rows = unit.shape[0]
    if rows % GRAM_BLOCKS:
        return unit.T @ unit
    blocks = unit.view(GRAM_BLOCKS, rows // GRAM_BLOCKS, unit.shape[1])
    return torch.bmm(blocks.transpose(1, 2), blocks).sum(dim=0)


class _ExactFrobenius(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # float32 under bf16 autocast
    def forward(ctx: Any, outputs: Tensor, slots: Tensor, num_slots: int) -> Tensor:
        """outputs (B, d, H, W) float32; slots (B, n) int64 instance slot per pixel, ``num_slots``
        for void. Returns the per-image losses (B,)."""
        batch, dim = outputs.shape[:2]
        rows = _rows(outputs)
        valid = slots < num_slots
        num_valid = valid.sum(dim=1).to(torch.float32)
        grams = outputs.new_zeros(batch, dim, dim)
        sums = outputs.new_zeros(batch, num_slots + 1, dim)
        sizes = torch.zeros(batch, num_slots + 1, dtype=torch.float32)
        scales = outputs.new_empty(batch, rows.shape[1])  # 1 / max(‖x‖, ε), 0 where void
        for image in range(batch):
            sizes[image] = torch.bincount(slots[image], minlength=num_slots + 1).float()
            for start in _chunks(rows.shape[1]):
                part = slice(start, start + CHUNK_PIXELS)
                chunk = rows[image, part].contiguous()  # one transposing copy for NCHW outputs
                norms = torch.linalg.vector_norm(chunk, dim=1)
                scale = torch.where(valid[image, part], 1.0 / norms.clamp(min=NORM_FLOOR), 0.0)
                scales[image, part] = scale
                unit = chunk * scale.unsqueeze(1)
                grams[image] += _gram(unit)
                sums[image].index_add_(0, slots[image, part], unit)
        sums[:, num_slots] = 0.0  # the void slot's rows are zero already; keep it exact
        sizes[:, num_slots] = 0.0
        squared = squared_frobenius(grams, sums, sizes)
        ctx.save_for_backward(outputs, slots, scales, grams, sums, num_valid)
        return squared / num_valid.clamp(min=1.0).square()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx: Any, grad_losses: Tensor) -> tuple[Tensor | None, None, None]:
        outputs, slots, scales, grams, sums, num_valid = ctx.saved_tensors
        rows = _rows(outputs)
        grad = torch.empty_like(outputs)
        grad_rows = _rows(grad)
        coefficients = 4.0 * grad_losses / num_valid.clamp(min=1.0).square()
        for image in range(outputs.shape[0]):
            # g = c (G f − s_slot) with c = 4 / n² (G is symmetric; void rows have f = 0, s_void = 0)
            toward_gram, toward_sums = coefficients[image] * grams[image], coefficients[image] * sums[image]
            for start in _chunks(rows.shape[1]):
                part = slice(start, start + CHUNK_PIXELS)
                scale = scales[image, part].unsqueeze(1)
                unit = rows[image, part].contiguous() * scale  # never in place: a view of the outputs
                own_sums = toward_sums.index_select(0, slots[image, part])
                toward = torch.addmm(own_sums, unit, toward_gram, beta=-1.0)
                along = torch.einsum("md,md->m", unit, toward)  # f·g
                toward.addcmul_(unit, along.unsqueeze(1), value=-1.0)
                torch.mul(toward, scale, out=grad_rows[image, part])
        # Rows shorter than ε: x/ε is linear there, so g/ε without the projection (scale is 1/ε).
        image_of, pixel_of = (scales > 0.5 / NORM_FLOOR).nonzero(as_tuple=True)  # ‖x‖ < 2ε
        below = torch.linalg.vector_norm(rows[image_of, pixel_of], dim=1) < NORM_FLOOR
        image_of, pixel_of = image_of[below], pixel_of[below]
        if len(image_of):
            scale = scales[image_of, pixel_of].unsqueeze(1)
            unit = rows[image_of, pixel_of] * scale
            own_sums = sums[image_of, slots[image_of, pixel_of]]
            toward = torch.bmm(unit.unsqueeze(1), grams[image_of]).squeeze(1) - own_sums
            grad_rows[image_of, pixel_of] = toward * (coefficients[image_of].unsqueeze(1) * scale)
        return grad, None, None


def exact_frobenius_from_raw(outputs: Tensor, labels: Tensor, ignore_index: int = 255) -> Tensor:
    """Mean over images with valid pixels of ‖F Fᵀ − A‖²_F / n², F = F.normalize(outputs, dim=1).

    outputs: (B, d, H, W) raw embeddings (any memory format); labels: (B, H, W) integer instance
    ids, ``ignore_index`` void. A scalar, 0 with a zero gradient when no pixel is valid.
    """
    flat = labels.flatten(1)
    valid = flat != ignore_index
    slots, num_slots = instance_slots(flat, valid)
    losses = _ExactFrobenius.apply(outputs.float(), slots, num_slots)
    return mean_over_images(losses, valid.any(dim=1))
