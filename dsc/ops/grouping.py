"""Grouping pixels by several integer keys at once: the basis of contingency tables and per-instance
sums (the spectral loss, the pair counts, rounding's clean-up).

Keys with small ranges (image index, instance ids, predicted labels) are counted in a dense table
with ``bincount``: O(n + table size), no sort. Only keys whose combined range is too wide for a
dense table fall back to sorting (``torch.unique``), O(n log n). On CPUs, contingency tables are
counted by a compiled kernel (``contingency.c``, built by ``dsc.ops.c_kernels``), the same
dense counting in one pass per image.
"""

from __future__ import annotations

import ctypes
import math

import torch
from torch import Tensor

from dsc.ops import c_kernels

_INT64_LIMIT = 2**62
# A dense table is used while it has at most this many cells per item (or 2^20 cells in all):
# filling and reading it then costs no more than a few passes over the items.
_DENSE_CELLS_PER_ITEM = 4
_DENSE_MIN_CELLS = 1 << 20
_CACHE_CELLS = 1 << 17  # int64 counts that stay in a core's cache while counting


def _lows_and_spans(keys: tuple[Tensor, ...]) -> tuple[list[Tensor], list[int]]:
    lows = [key.min() if key.numel() else key.new_zeros(()) for key in keys]
    spans = [int(key.max()) - int(low) + 1 if key.numel() else 1 for key, low in zip(keys, lows, strict=True)]
    return lows, spans


def _mixed_radix(keys: tuple[Tensor, ...], lows: list[Tensor], spans: list[int]) -> Tensor:
    combined = torch.zeros_like(keys[0], dtype=torch.int64)
    for key, low, span in zip(keys, lows, spans, strict=True):
        combined = combined * span + (key.long() - low)
    return combined


def fits_dense_table(cells: int, items: int) -> bool:
    """Whether a dense table of ``cells`` counts is cheaper than sorting ``items`` items."""
    return cells <= max(_DENSE_CELLS_PER_ITEM * items, _DENSE_MIN_CELLS)


def combine_keys(*keys: Tensor) -> Tensor:
    """One int64 per item, equal for two items exactly when all their keys are equal, ordered like
    the key tuples (the first key most significant). keys: 1-D integer tensors of one length.

    A mixed-radix number over the keys' ranges; ranges too wide for int64 fall back to
    ``unique(dim=…)`` (then the ids are compact but still ordered like the key tuples).
    """
    lows, spans = _lows_and_spans(keys)
    if math.prod(spans) >= _INT64_LIMIT:
        return torch.unique(torch.stack(keys), dim=1, return_inverse=True)[1]
    return _mixed_radix(keys, lows, spans)


def group(image: Tensor, *keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Group items by (image, *keys), groups ordered by image first (then by the keys).

    image, keys: 1-D integer tensors of one length n. Returns group_of_item (n,) int64,
    image_of_group (G,) and group sizes (G,).
    """
    all_keys = (image, *keys)
    lows, spans = _lows_and_spans(all_keys)
    cells = math.prod(spans)
    if cells < _INT64_LIMIT and fits_dense_table(cells, image.numel()):
        combined = _mixed_radix(all_keys, lows, spans)
        table = torch.bincount(combined, minlength=cells)
        present = table > 0
        group_of_cell = torch.cumsum(present, 0) - 1
        cell_of_group = present.nonzero().squeeze(1)
        image_of_group = cell_of_group // (cells // spans[0]) + lows[0].long()
        return group_of_cell[combined], image_of_group, table[cell_of_group]
    _, group_of_item, sizes = torch.unique(combine_keys(*all_keys), return_inverse=True, return_counts=True)
    image_of_group = torch.zeros_like(sizes).scatter_(0, group_of_item, image.long())
    return group_of_item, image_of_group, sizes


def _column_ids(
    labels: Tensor, low: Tensor, high: Tensor, rows: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """(ids of ``dtype``, values): target labels as table columns, ``values[id]`` the label.

    Labels' own range when ``rows`` rows of it fit in the cache; else the labels present,
    renumbered 0..V−1 through a lookup table (small non-negative ranges, O(n)) or a sort.
    low, high: the labels' minimum and maximum."""
    span = int(high) - int(low) + 1  # Python integers: no int64 overflow
    if rows * span <= _CACHE_CELLS:
        return (labels - low).to(dtype), torch.arange(span, device=labels.device) + low
    if low >= 0 and fits_dense_table(int(high) + 1, labels.numel()):
        small = labels.to(torch.uint8) if high < 256 else labels  # bincount reads bytes fastest
        present = torch.bincount(small.flatten(), minlength=int(high) + 1) > 0
        lookup = (torch.cumsum(present, 0) - 1).to(dtype)
        return torch.take(lookup, labels), present.nonzero().squeeze(1)
    values, ids = torch.unique(labels, return_inverse=True)
    return ids.to(dtype), values


def contingency_cells(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The non-empty cells of every image's contingency table of two labelings, counted in one pass.

    preds, target: (B, N) integer labels. Returns, per non-empty cell: the image (C,), the pred
    label (C,), the target label (C,) and the number of pixels (C,), all int64, ordered by image.

    On CPUs a compiled kernel (``contingency.c``) counts each image into a dense table of its own
    label ranges, held in a core's cache, images in parallel. Elsewhere, without a C compiler, or
    for ranges too wide, the table stacks, image after image, one row per pred label in that
    image's own range, and one column per target label present in the batch, so it stays small
    (cache-resident) and is counted by one ``bincount``; pred ranges too wide for that are first
    renumbered by a sort.
    """
    device = target.device
    if target.numel() == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty, empty, empty
    if device.type == "cpu":
        cells = _contingency_cells_compiled(preds, target)
        if cells is not None:
            return cells
    return _contingency_cells_bincount(preds, target)


def _contingency_cells_bincount(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``contingency_cells`` of non-empty labelings, on any device, from one ``bincount``."""
    batch = target.shape[0]
    device = target.device
    pred_values = None
    low, high = torch.aminmax(preds, dim=1)
    spans = (high - low + 1).long()
    if bool((spans <= 0).any()) or not fits_dense_table(int(spans.sum()), target.numel()):  # <= 0: overflow
        pred_values, preds = torch.unique(preds, return_inverse=True)
        low, high = torch.aminmax(preds, dim=1)
        spans = (high - low + 1).long()
    rows = int(spans.sum())
    # int32 keys where they fit: half the memory traffic of int64 (256 columns bound the table).
    target_low, target_high = torch.aminmax(target)
    dtype = torch.int32 if rows * (int(target_high) - int(target_low) + 1) < 2**31 else torch.int64
    target_ids, target_values = _column_ids(target, target_low, target_high, rows, dtype)
    columns = len(target_values)
    cells = rows * columns
    first_row = torch.cumsum(spans, 0) - spans  # of each image
    # key = (first_row + pred − low) · columns + target id, built in one buffer.
    key = preds.to(dtype, copy=True)
    key.add_((first_row - low).to(dtype)[:, None]).mul_(columns).add_(target_ids)
    counts = torch.bincount(key.flatten(), minlength=cells)
    cell = counts.nonzero().squeeze(1)
    row, column = cell // columns, cell % columns
    image = torch.repeat_interleave(torch.arange(batch, device=device), spans, output_size=rows)[row]
    pred_label = row - first_row[image] + low[image].long()
    if pred_values is not None:
        pred_label = pred_values[pred_label]
    return image, pred_label, target_values[column], counts[cell]


_CONTINGENCY_KERNEL: list[ctypes.CDLL | None] = []  # built and checked at first use
_CELLS_PER_IMAGE = 4096


def _declare(library: ctypes.CDLL) -> None:
    pointer, integer = ctypes.c_void_p, ctypes.c_int64
    labels_and_room = [pointer, pointer, integer, integer, integer]  # labels, pixels, max cells, room
    library.dsc_contingency_cells.argtypes = [*labels_and_room, pointer, pointer, pointer]
    library.dsc_contingency_cells.restype = integer


def _contingency_kernel() -> ctypes.CDLL | None:
    """``contingency.c`` compiled for this machine and checked once against the ``bincount`` path;
    None (after one RuntimeWarning saying why) where no C compiler works or the check fails."""
    if not _CONTINGENCY_KERNEL:
        _CONTINGENCY_KERNEL.append(
            c_kernels.build_checked(
                "dsc.ops",
                "contingency.c",
                None,
                _declare,
                _contingency_kernel_check,
                "contingency tables are counted by torch.bincount instead, at about twice the time",
            )
        )
    return _CONTINGENCY_KERNEL[0]


def _contingency_kernel_check(library: ctypes.CDLL) -> str:
    """'' if the kernel's cells equal the ``bincount`` path's on a small input with runs, else why."""
    generator = torch.Generator().manual_seed(0)
    preds = torch.randint(-3, 4, (2, 500), generator=generator).repeat_interleave(3, dim=1)
    target = torch.randint(5, 9, (2, 1500), generator=generator)
    target[:, 700:900] = 255
    expected = _contingency_cells_bincount(preds, target)
    cells = _contingency_cells_compiled(preds, target, library)
    agrees = cells is not None and all(map(torch.equal, cells, expected))
    return "" if agrees else "self-check: its cells differ from bincount's"


def _contingency_cells_compiled(
    preds: Tensor, target: Tensor, library: ctypes.CDLL | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """``contingency_cells`` of int64 CPU labels (B, N) by ``contingency.c``, or None: without a
    working kernel, for other dtypes, or where an image's table would be too large to be dense."""
    if preds.dtype != torch.int64 or target.dtype != torch.int64:
        return None
    library = _contingency_kernel() if library is None else library
    if library is None:
        return None
    preds, target = preds.contiguous(), target.contiguous()
    batch, pixels = target.shape
    max_cells = max(_DENSE_CELLS_PER_ITEM * pixels, _DENSE_MIN_CELLS)
    # (3, room) pred labels, target labels, sizes per image: room for a typical image's cells, and
    # an image with more is counted again with room for all (room for N cells per image would
    # cost the page faults of a 3 × 8 × B × N-byte buffer).
    found = [torch.empty(3, min(pixels, _CELLS_PER_IMAGE), dtype=torch.int64) for _ in range(batch)]
    sizes = [0] * batch

    def count(image: int) -> None:
        if sizes[image] > found[image].shape[1]:
            found[image] = torch.empty(3, sizes[image], dtype=torch.int64)
        sizes[image] = library.dsc_contingency_cells(
            preds[image].data_ptr(),
            target[image].data_ptr(),
            pixels,
            max_cells,
            found[image].shape[1],
            *(row.data_ptr() for row in found[image]),
        )

    c_kernels.run_in_threads(count, batch)
    if min(sizes) < 0:
        return None
    again = [image for image in range(batch) if sizes[image] > found[image].shape[1]]
    c_kernels.run_in_threads(lambda task: count(again[task]), len(again))
    pred_label, target_label, size = torch.cat(
        [cells[:, :size] for cells, size in zip(found, sizes, strict=True)], dim=1
    )
    image = torch.repeat_interleave(torch.arange(batch), torch.tensor(sizes), output_size=sum(sizes))
    return image, pred_label, target_label, size


def instance_slots(labels: Tensor, valid: Tensor) -> tuple[Tensor, int]:
    """Each valid pixel's instance as a slot 0..k−1 of its image (in id order); ``num_slots`` (the
    largest k, at least 1) for the others. labels: (B, n) integer ids, valid: (B, n) bool →
    (B, n) int64 slots and num_slots.

    A dense (B × id range) table of present ids when it is small (one ``bincount``, no masking);
    otherwise the ids are grouped by ``group``."""
    batch = labels.shape[0]
    low, high = torch.aminmax(labels) if labels.numel() else (labels.new_zeros(()), labels.new_zeros(()))
    span = int(high) - int(low) + 1  # Python integers: no int64 overflow
    if fits_dense_table(batch * span, labels.numel()):
        offsets = torch.arange(batch, device=labels.device).unsqueeze(1) * span
        cells = batch * span  # the last cell, one past the table, collects the invalid pixels
        keys = torch.where(valid, (labels - low).add_(offsets), cells)
        present = torch.bincount(keys.flatten(), minlength=cells + 1)[:cells].view(batch, span) > 0
        num_slots = max(int(present.sum(dim=1).max()), 1) if batch else 1
        slot_of_id = torch.where(present, present.cumsum(dim=1) - 1, num_slots).flatten()
        return torch.take(torch.cat([slot_of_id, slot_of_id.new_full((1,), num_slots)]), keys), num_slots
    image_index = torch.arange(batch, device=labels.device).unsqueeze(1).expand_as(labels)
    instance_of_pixel, image_of_instance, _ = group(image_index[valid], labels[valid])
    per_image = torch.bincount(image_of_instance, minlength=batch)
    first_of_image = per_image.cumsum(0) - per_image
    num_slots = max(int(per_image.max()), 1) if batch else 1
    slots = torch.full_like(labels, num_slots, dtype=torch.int64)
    slots[valid] = instance_of_pixel - first_of_image[image_of_instance[instance_of_pixel]]
    return slots, num_slots


def instance_sums(values: Tensor, labels: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per image, the sum of ``values`` over each instance's pixels, and their number.

    values: (B, n, d), zero at invalid pixels; labels: (B, n) any integer ids; valid: (B, n).
    Returns sums (B, K + 1, d) and sizes (B, K + 1) in the values' dtype, with K = ``num_slots``
    of ``instance_slots`` and row K (the invalid pixels) zero, and each pixel's (B, n) slot.
    """
    batch, _, dim = values.shape
    slots, num_slots = instance_slots(labels, valid)
    cells = (torch.arange(batch, device=labels.device).unsqueeze(1) * (num_slots + 1) + slots).flatten()
    sums = values.new_zeros(batch * (num_slots + 1), dim).index_add_(0, cells, values.reshape(-1, dim))
    sizes = torch.bincount(cells, minlength=batch * (num_slots + 1)).to(values.dtype)
    sums, sizes = sums.view(batch, num_slots + 1, dim), sizes.view(batch, num_slots + 1)
    sums[:, num_slots], sizes[:, num_slots] = 0, 0
    return sums, sizes, slots
