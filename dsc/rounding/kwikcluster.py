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

from dsc.rounding import compiled_cpu
from dsc.rounding.hashing import draw_seed, hash_keys, hash_uniform

_NO_PRIORITY = 2**63 - 1  # above every priority: pixels already clustered or left out
_MAX_BLOCK = 64  # candidate pivots settled per pass
_SETTLE_ROUNDS = 4  # rounds of settling candidates per pass; the undecided wait for the next
_BLOCK_ELEMENTS = 2**24  # bound on B × (pixels left) × K, the size of one pass's comparison
_CPU_CHUNK_ELEMENTS = 2**20  # on CPUs, B × rows × pivots compared at a time: 4 MiB that stay in cache
_FEW_PIVOTS = 16  # up to this many pivots, a pass compares them with the pixels pivot-major


def as_batch(rows: Tensor, mask: Tensor | None, check_finite: bool = True) -> tuple[Tensor, Tensor, bool]:
    """Accept (N, d) or (B, N, d) rows and an optional (N,) / (B, N) mask; return batched both.
    Raises ValueError for non-finite rows among those ``mask`` selects, unless ``check_finite`` is
    False (the caller checks them)."""
    if rows.dim() not in (2, 3):
        raise ValueError(f"expected (N, d) or (B, N, d) rows, got shape {tuple(rows.shape)}")
    unbatched = rows.dim() == 2
    if unbatched:
        rows = rows.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if mask is None:  # a view of one True: no pass over the pixels (the kernels read it as no mask)
        mask = torch.ones(1, 1, dtype=torch.bool, device=rows.device).expand(rows.shape[:2])
    if mask.shape != rows.shape[:2]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match rows {tuple(rows.shape)}")
    if check_finite:
        check_finite_rows(rows, mask)
    return rows, mask, unbatched


def check_finite_rows(rows: Tensor, mask: Tensor) -> None:
    """ValueError if a row that ``mask`` (B, N) selects of ``rows`` (B, N, d) has a NaN or inf."""
    selected = rows if bool(mask.all()) else torch.where(mask.unsqueeze(-1), rows, 0.0)
    # One sum finds any NaN or inf; the element-wise check rules out a sum that merely overflowed.
    if not torch.isfinite(selected.sum()) and not torch.isfinite(selected).all():
        raise ValueError(compiled_cpu.NONFINITE)


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
    ids: (B, K) pixel ids. Returns (B, K) bool, false from the first candidate left undecided on:
    such candidates stay for the next pass (the first valid candidate is always a pivot).
    """
    batch, size, _ = rows.shape
    earlier = torch.ones(size, size, dtype=torch.bool, device=rows.device).tril(-1)  # [c, c'] = c' < c
    similarity = rows @ rows.transpose(1, 2)  # (B, K, K)
    if soft_power is None:
        # Rounds of a greedy maximal independent set: a candidate is decided once every earlier
        # candidate it agrees with is; it is a pivot when none of them is. A fixed number of rounds
        # needs no host synchronisation; pivots after the first undecided candidate are not kept,
        # since that candidate may yet be an earlier pivot for the pixels they would take.
        agrees = (similarity > threshold) & earlier & valid.unsqueeze(1)
        pivot = torch.zeros_like(valid)
        undecided = valid.clone()
        for _ in range(_SETTLE_ROUNDS):
            blocked = (agrees & pivot.unsqueeze(1)).any(2)
            waiting = (agrees & undecided.unsqueeze(1)).any(2)
            pivot |= undecided & ~blocked & ~waiting
            undecided &= blocked.logical_not() & waiting
        return pivot & (undecided.cumsum(1) == 0)
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
    candidate_rows: Tensor,
    pivot: Tensor,
    numbers: Tensor,
    threshold: float,
    seed: int,
    soft_power: float | None,
    ids: Tensor,
) -> tuple[Tensor, Tensor]:
    """For each pixel left, whether it agrees with any pivot among K candidates and the first.

    rows: (B, N, d); index: (B, R) the pixels left (None: all N); candidate_rows: (B, K, d) in
    visiting order, ``pivot`` (B, K) which of them are pivots, ``numbers`` (B, K) their labels;
    ids: (B, R) pixel ids. Returns joined (B, R) bool and first (B, R) int64, the candidate
    position of the first agreeing pivot (0 where not joined).
    On CPUs the rows go through in chunks whose comparison with the candidates stays in cache.
    """
    batch, candidates, dim = candidate_rows.shape
    left = rows.shape[1] if index is None else index.shape[1]
    chunk = left
    if rows.device.type == "cpu":
        chunk = max(1, _CPU_CHUNK_ELEMENTS // (batch * max(candidates, 1)))
    # Comparisons laid out (B, K, rows) for a few candidates, (B, rows, K) for many: CPU BLAS runs
    # the product with a handful of output columns at a fraction of its speed.
    axis = 1 if candidates <= _FEW_PIVOTS else 2
    along = (batch, candidates, 1) if axis == 1 else (batch, 1, candidates)
    streams = (numbers + 1).view(along)
    not_pivot = pivot.logical_not().view(along)
    joined = torch.empty(batch, left, dtype=torch.bool, device=rows.device)
    first = torch.empty(batch, left, dtype=torch.int64, device=rows.device)
    for start in range(0, left, chunk):
        part = slice(start, min(start + chunk, left))
        if index is None:
            left_rows = rows[:, part]
        else:
            left_rows = rows.gather(1, index[:, part].unsqueeze(2).expand(-1, -1, dim))
        if axis == 1:
            similarity = candidate_rows @ left_rows.transpose(1, 2)
        else:
            similarity = left_rows @ candidate_rows.transpose(1, 2)
        similarity.masked_fill_(not_pivot, -torch.inf)  # candidates that are not pivots take nothing
        joins = _agreement(similarity, threshold, seed, soft_power, streams, ids[:, part].unsqueeze(axis))
        # The first pivot each pixel agrees with (max returns the first of equal maxima).
        agreed, first[:, part] = joins.view(torch.uint8).max(axis)
        joined[:, part] = agreed.bool()
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


def visiting_priority(seed: int, pixel_ids: Tensor) -> Tensor:
    """(B, N) int64 priorities, lowest first: the 32-bit hash of each pixel's id above its index
    (ties of the hash go to the lower index). Indices below 2³¹."""
    index = torch.arange(pixel_ids.shape[-1], device=pixel_ids.device)
    return hash_keys(seed, 0, pixel_ids, pixel_ids.device) * 2**31 + index


def kwikcluster_labels(
    rows: Tensor,
    mask: Tensor,
    threshold: float,
    seed: int,
    soft_power: float | None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """Batched KwikCluster on (B, N, d) rows; pixels outside ``mask`` get label −1. The visiting
    order hashes ``pixel_ids`` (default: the pixel's index 0..N−1). On CPUs the hard variant runs
    the compiled kernel (``dsc.rounding.compiled_cpu``) where one is built, else the passes.
    Raises ValueError where a pixel to cluster has a NaN or infinite channel."""
    if rows.device.type == "cpu" and soft_power is None and rows.shape[1] > 0:
        library = compiled_cpu.kernel(rows.shape[2], _passes_without_soft_coins)
        if library is not None:  # it checks the rows as it reads them
            return compiled_cpu.kwikcluster_compiled(rows, mask, threshold, seed, pixel_ids, library)
    check_finite_rows(rows, mask)
    return kwikcluster_passes(rows, mask, threshold, seed, soft_power, pixel_ids)


def _passes_without_soft_coins(
    rows: Tensor, mask: Tensor, threshold: float, seed: int, pixel_ids: Tensor | None
) -> Tensor:
    return kwikcluster_passes(rows, mask, threshold, seed, None, pixel_ids)


def kwikcluster_passes(
    rows: Tensor,
    mask: Tensor,
    threshold: float,
    seed: int,
    soft_power: float | None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """``kwikcluster_labels`` by batched PyTorch passes on any device, one host synchronisation a
    pass (the count of pixels left) and one before the first."""
    batch, num_pixels, dim = rows.shape
    # One spare column, written for the padding of the rows of pixels left.
    labels = torch.full((batch, num_pixels + 1), -1, dtype=torch.int64, device=rows.device)
    if num_pixels == 0:
        return labels[:, :num_pixels]
    ids = torch.arange(num_pixels, device=rows.device) if pixel_ids is None else pixel_ids.to(rows.device)
    ids = ids.expand(batch, num_pixels)
    priority = visiting_priority(seed, ids)
    # The pixels left: their index, priority and id, compacted after every pass.
    index = torch.arange(num_pixels, device=rows.device).expand(batch, num_pixels)
    everything_left = bool(mask.all())  # nothing clustered or left out yet: no gather of rows
    if everything_left:
        valid = mask
    else:
        index, priority, ids, valid = _compact(mask, index, priority, ids)
    next_label = torch.zeros(batch, dtype=torch.int64, device=rows.device)
    while valid.shape[1] > 0:
        left = valid.shape[1]
        block = max(1, min(_MAX_BLOCK, left, _BLOCK_ELEMENTS // (batch * left)))
        order, position = torch.where(valid, priority, _NO_PRIORITY).topk(block, dim=1, largest=False)
        candidates = index.gather(1, position)
        candidate_rows = rows.gather(1, candidates.unsqueeze(2).expand(-1, -1, dim))
        pivot = _settle_pivots(
            candidate_rows,
            order < _NO_PRIORITY,
            threshold,
            seed,
            soft_power,
            next_label,
            ids.gather(1, position),
        )
        numbers = next_label.unsqueeze(1) + pivot.cumsum(1) - 1  # each pivot's label
        joined, first = _first_agreeing_pivot(
            rows,
            None if everything_left else index,
            candidate_rows,
            pivot,
            numbers,
            threshold,
            seed,
            soft_power,
            ids,
        )
        everything_left = False
        # A pivot joins itself, whatever its similarity (rows need not be unit, the threshold may be
        # ≥ 1): it agrees with no earlier pivot. Other candidates write to a spare column.
        target = torch.where(pivot, position, left)
        own = torch.arange(block, device=rows.device).expand(batch, block)
        first = torch.cat([first, first.new_zeros(batch, 1)], 1).scatter_(1, target, own)[:, :left]
        joined = torch.cat([joined, joined.new_zeros(batch, 1)], 1).scatter_(1, target, True)[:, :left]
        new = torch.where(joined, numbers.gather(1, first), -1)
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
    rows, mask, unbatched = as_batch(rows, mask, check_finite=False)  # kwikcluster_labels checks
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
    rows, mask, unbatched = as_batch(rows, mask, check_finite=False)  # kwikcluster_labels checks
    labels = kwikcluster_labels(rows, mask, 0.5, draw_seed(generator), power, pixel_ids)
    return labels.squeeze(0) if unbatched else labels
