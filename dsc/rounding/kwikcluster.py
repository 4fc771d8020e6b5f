"""KwikCluster (Ailon, Charikar & Newman, 2008): the paper's rounding of embeddings to a partition.

Visit pixels in a random order; each pixel not yet clustered becomes a pivot and takes every
unclustered pixel whose inner product with it exceeds the threshold. Section 2.3 and Theorem 2.2
of the paper bound the loss of the rounded partition by 6× the network's loss.

Equivalently (as in C4, Pan et al. 2015): a pixel is a pivot when it agrees with no earlier pivot,
and every other pixel joins the first pivot, in visiting order, that it agrees with. So pivots are
settled a block at a time: the next K unclustered pixels in visiting order are compared with each
other (K × K) to find which of them are pivots, then every unclustered pixel is compared with those
pivots in one matrix product and joins the first it agrees with, and the pixels left are compacted.
Each pass touches only the pixels still unclustered, all images of a batch advance together, and
the host synchronises once per block, never per pivot. The labels are those of the one-pivot-at-a-time
algorithm for the same seed.

Shared with the schemes built on KwikCluster (``best_of``, ``refine``, ``kmeans``): ``as_batch``
(rows and mask in batched form, checked) and ``kwikcluster_labels`` (the batched core, seeded).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.rounding.hashing import draw_seed, hash_keys, hash_uniform

_NO_PRIORITY = 2**33  # above every hash key: pixels already clustered or left out
_MAX_BLOCK = 64  # candidate pivots settled per pass
_BLOCK_ELEMENTS = 2**24  # bound on B × (pixels left) × K, the size of one pass's comparison
_CPU_CHUNK_ELEMENTS = 2**20  # on CPUs, B × rows × pivots compared at a time: 4 MiB that stay in cache
_FEW_PIVOTS = 16  # up to this many pivots, a pass compares them with the pixels pivot-major


def as_batch(rows: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, bool]:
    """Accept (N, d) or (B, N, d) rows and an optional (N,) / (B, N) mask; return batched both."""
    if rows.dim() not in (2, 3):
        raise ValueError(f"expected (N, d) or (B, N, d) rows, got shape {tuple(rows.shape)}")
    unbatched = rows.dim() == 2
    if unbatched:
        rows = rows.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if mask is None:
        mask = torch.ones(rows.shape[:2], dtype=torch.bool, device=rows.device)
    if mask.shape != rows.shape[:2]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match rows {tuple(rows.shape)}")
    # One sum finds any NaN or inf; the element-wise check rules out a sum that merely overflowed.
    if not torch.isfinite(rows.sum()) and not torch.isfinite(rows).all():
        raise ValueError("rounding got non-finite embeddings (NaN or inf): check the network's output")
    return rows, mask, unbatched


def _agreement(
    similarity: Tensor, threshold: float, seed: int, soft_power: float | None, streams: Tensor, ids: Tensor
) -> Tensor:
    """Whether pixels join pivots: ``similarity`` (B, R, P) or (B, P, R) > threshold, or for the
    soft variant a hashed coin per (pixel, pivot) under x^p / (x^p + (1 − x)^p); a similarity of
    +inf always joins, −inf never. streams: int64 pivot number + 1 (the coin's stream), (B, 1, P) or
    (B, P, 1); ids: int64 pixel ids, (B, R, 1) or (B, 1, R), as they broadcast with similarity."""
    if soft_power is None:
        return similarity > threshold
    # The authors' soft variant, written as a logistic of p · log(x / (1 − x)) so that large p does
    # not underflow.
    x = similarity.double().clamp(0.0, 1.0)
    probability = torch.sigmoid(soft_power * (torch.log(x) - torch.log1p(-x)))
    coins = hash_uniform(seed, streams, ids, similarity.device) < probability
    return torch.where(similarity.isinf(), similarity > 0, coins)  # ±inf: forced in or out


def _settle_pivots(
    rows: Tensor,
    valid: Tensor,
    threshold: float,
    seed: int,
    soft_power: float | None,
    first_label: Tensor,
    ids: Tensor,
) -> Tensor:
    """Which of K candidates, in visiting order, are pivots: those agreeing with no earlier pivot.

    rows: (B, K, d); valid: (B, K) bool; first_label: (B,) the number of pivots before these;
    ids: (B, K) pixel ids. Returns (B, K) bool.
    """
    batch, size, _ = rows.shape
    earlier = torch.ones(size, size, dtype=torch.bool, device=rows.device).tril(-1)  # [c, c'] = c' < c
    similarity = rows @ rows.transpose(1, 2)  # (B, K, K)
    if soft_power is None:
        # Rounds of a greedy maximal independent set: a candidate is decided once every earlier
        # candidate it agrees with is; it is a pivot when none of them is.
        agrees = (similarity > threshold) & earlier & valid.unsqueeze(1)
        pivot = torch.zeros_like(valid)
        undecided = valid.clone()
        while bool(undecided.any()):
            blocked = (agrees & pivot.unsqueeze(1)).any(2)
            waiting = (agrees & undecided.unsqueeze(1)).any(2)
            pivot |= undecided & ~blocked & ~waiting
            undecided &= blocked.logical_not() & waiting
        return pivot
    # Soft coins depend on each earlier pivot's number, known only in order: one candidate at a time.
    pivot = torch.zeros_like(valid)
    for candidate in range(size):
        numbers = first_label.unsqueeze(1) + pivot[:, :candidate].cumsum(1) - 1  # (B, candidate)
        joins = _agreement(
            similarity[:, candidate : candidate + 1, :candidate],
            threshold,
            seed,
            soft_power,
            (numbers + 1).unsqueeze(1),
            ids[:, candidate].view(batch, 1, 1),
        ).squeeze(1)
        pivot[:, candidate] = valid[:, candidate] & ~(joins & pivot[:, :candidate]).any(1)
    return pivot


def _first_agreeing_pivot(
    rows: Tensor,
    index: Tensor | None,
    pivot_rows: Tensor,
    pivot_valid: Tensor,
    threshold: float,
    seed: int,
    soft_power: float | None,
    first_label: Tensor,
    ids: Tensor,
) -> tuple[Tensor, Tensor]:
    """For each pixel left, whether it agrees with any of P pivots and the first it agrees with.

    rows: (B, N, d); index: (B, R) the pixels left (None: all N); pivot_rows: (B, P, d) in visiting
    order, ``pivot_valid`` (B, P) false for padding; first_label: (B,) the label of pivot 0;
    ids: (B, R) pixel ids. Returns joined (B, R + 1) bool and first (B, R + 1) int64 (0 where not
    joined), each with a spare last column for the caller to write padding to.
    On CPUs the rows go through in chunks whose comparison with the pivots stays in cache.
    """
    batch, pivots, dim = pivot_rows.shape
    left = rows.shape[1] if index is None else index.shape[1]
    chunk = left
    if rows.device.type == "cpu":
        chunk = max(1, _CPU_CHUNK_ELEMENTS // (batch * max(pivots, 1)))
    # Comparisons laid out (B, P, rows) for a few pivots, (B, rows, P) for many: CPU BLAS runs the
    # product with a handful of output columns at a fraction of its speed.
    pivot_axis = 1 if pivots <= _FEW_PIVOTS else 2
    along_pivots = (-1, pivots, 1) if pivot_axis == 1 else (-1, 1, pivots)
    streams = (
        first_label.view(batch, 1, 1) + torch.arange(pivots, device=rows.device).view(along_pivots)
    ) + 1
    padding = None if bool(pivot_valid.all()) else ~pivot_valid.view(along_pivots)
    joined = torch.zeros(batch, left + 1, dtype=torch.bool, device=rows.device)
    first = torch.zeros(batch, left + 1, dtype=torch.int64, device=rows.device)
    for start in range(0, left, chunk):
        part = slice(start, min(start + chunk, left))
        if index is None:
            left_rows = rows[:, part]
        else:
            left_rows = rows.gather(1, index[:, part].unsqueeze(2).expand(-1, -1, dim))
        if pivot_axis == 1:
            similarity = pivot_rows @ left_rows.transpose(1, 2)
        else:
            similarity = left_rows @ pivot_rows.transpose(1, 2)
        if padding is not None:
            similarity.masked_fill_(padding, -torch.inf)  # padding pivots join nothing
        pixel_ids = ids[:, part].unsqueeze(pivot_axis)
        joins = _agreement(similarity, threshold, seed, soft_power, streams, pixel_ids)
        # The first pivot each pixel agrees with (max returns the first of equal maxima).
        agreed, first_part = joins.view(torch.uint8).max(pivot_axis)
        joined[:, part], first[:, part] = agreed.bool(), first_part
    return joined, first


def _compact(keep: Tensor, *values: Tensor) -> tuple[Tensor, ...]:
    """Move the kept entries of each (B, R) tensor to the front of its row, in their order, and
    cut the rows to the largest count kept; returns the tensors and the (B, R') validity mask."""
    counts = keep.sum(1)
    width = int(counts.max()) if keep.numel() else 0  # the host synchronisation of a pass
    if width == 0:  # nothing kept: the last pass ends here
        return (*(value[:, :0] for value in values), keep[:, :0])
    position = torch.where(keep, keep.cumsum(1) - 1, width)  # dropped entries go to a spare column
    valid = torch.arange(width, device=keep.device).unsqueeze(0) < counts.unsqueeze(1)
    compacted = []
    for value in values:
        out = torch.zeros(keep.shape[0], width + 1, dtype=value.dtype, device=value.device)
        compacted.append(out.scatter_(1, position, value)[:, :width])
    return (*compacted, valid)


def kwikcluster_labels(
    rows: Tensor,
    mask: Tensor,
    threshold: float,
    seed: int,
    soft_power: float | None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """Batched KwikCluster on (B, N, d) rows; pixels outside ``mask`` get label −1. The visiting
    order hashes ``pixel_ids`` (default: the pixel's index 0..N−1)."""
    batch, num_pixels, dim = rows.shape
    # One spare column, written for the padding of the rows of pixels left.
    labels = torch.full((batch, num_pixels + 1), -1, dtype=torch.int64, device=rows.device)
    if num_pixels == 0:
        return labels[:, :num_pixels]
    ids = torch.arange(num_pixels, device=rows.device) if pixel_ids is None else pixel_ids.to(rows.device)
    ids = ids.expand(batch, num_pixels)
    priority = hash_keys(seed, 0, ids, rows.device)
    # The pixels left: their index, priority and id, compacted after every pass.
    index = torch.arange(num_pixels, device=rows.device).expand(batch, num_pixels)
    if bool(mask.all()):
        valid = mask
    else:
        index, priority, ids, valid = _compact(mask, index, priority, ids)
    next_label = torch.zeros(batch, dtype=torch.int64, device=rows.device)
    while valid.shape[1] > 0:
        left = valid.shape[1]
        block = max(1, min(_MAX_BLOCK, left, _BLOCK_ELEMENTS // (batch * left)))
        order, position = torch.where(valid, priority, _NO_PRIORITY).topk(block, dim=1, largest=False)
        candidates_valid = order < _NO_PRIORITY
        candidates = index.gather(1, position)
        candidate_rows = rows.gather(1, candidates.unsqueeze(2).expand(-1, -1, dim))
        pivot = _settle_pivots(
            candidate_rows, candidates_valid, threshold, seed, soft_power, next_label, ids.gather(1, position)
        )
        # The pivots in visiting order, packed to the front: (B, P).
        pivot_position, pivot_valid = _compact(pivot, position)
        pivots = pivot_position.shape[1]
        pivot_rows = rows.gather(1, index.gather(1, pivot_position).unsqueeze(2).expand(-1, -1, dim))
        everything_left = left == num_pixels and bool(valid.all())  # nothing clustered or left out yet
        joined, first = _first_agreeing_pivot(
            rows,
            None if everything_left else index,
            pivot_rows,
            pivot_valid,
            threshold,
            seed,
            soft_power,
            next_label,
            ids,
        )
        # A pivot joins itself, whatever its similarity (rows need not be unit, the threshold may be
        # ≥ 1), unless it agrees with an earlier pivot. Padding pivots write to the spare column.
        own = torch.arange(pivots, device=rows.device).expand(batch, pivots)
        earlier = torch.where(joined.gather(1, pivot_position), first.gather(1, pivot_position), pivots)
        target = torch.where(pivot_valid, pivot_position, left)
        first.scatter_(1, target, torch.minimum(earlier, own))
        joined.scatter_(1, target, True)
        joined, first = joined[:, :left], first[:, :left]
        new = torch.where(joined, next_label.unsqueeze(1) + first, -1)
        labels.scatter_(1, torch.where(valid, index, num_pixels), new)
        next_label += pivot.sum(1)
        index, priority, ids, valid = _compact(valid & ~joined, index, priority, ids)
    return labels[:, :num_pixels]


def kwikcluster(
    rows: Tensor,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """Cluster rows by KwikCluster in inner-product space.

    rows: (N, d) or batched (B, N, d), normally of unit length (v_i·v_j ∈ [−1, 1]).
    threshold: a pixel joins a pivot's cluster when v_i·v_p > threshold (the paper: ½).
    generator: a CPU ``torch.Generator`` that seeds the visiting order; the order itself is hashed
        on the rows' device, so one seed gives the same labels on CPU and GPU (except where a
        similarity lies within float rounding of the threshold), and the same labels for an image
        whether it is rounded alone or in a batch.
    mask: (N,) or (B, N) bool, the pixels to cluster; the others get label −1.
    pixel_ids: (N,) or (B, N) int64 ids that the visiting order hashes instead of the pixel indices
        (``dsc.rounding.hashing.position_ids`` keeps an image's order when it is padded into a batch).

    Returns (N,) or (B, N) int64 labels 0..k−1 per image, numbered in the order pivots were visited.
    """
    rows, mask, unbatched = as_batch(rows, mask)
    labels = kwikcluster_labels(rows, mask, threshold, draw_seed(generator), None, pixel_ids)
    return labels.squeeze(0) if unbatched else labels


def kwikcluster_soft(
    rows: Tensor,
    power: float = 10.0,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """The authors' soft KwikCluster: a pixel of similarity x to the pivot joins with probability
    x^p / (x^p + (1 − x)^p) (x clamped to [0, 1]; ½ at x = ½, a hard threshold as p → ∞).

    Shapes, ``generator``, ``mask`` and ``pixel_ids`` as for ``kwikcluster``; the coins are hashed,
    so CPU and GPU agree for one seed.
    """
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")
    rows, mask, unbatched = as_batch(rows, mask)
    labels = kwikcluster_labels(rows, mask, 0.5, draw_seed(generator), power, pixel_ids)
    return labels.squeeze(0) if unbatched else labels
