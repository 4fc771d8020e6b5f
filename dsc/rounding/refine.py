"""KwikCluster followed by local improvement: the paper's "locally optimal projection" (Sec. 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.rounding import compiled_cpu
from dsc.rounding.hashing import draw_seed
from dsc.rounding.kwikcluster import as_batch, kwikcluster_labels
from dsc.rounding.postprocess import cluster_sums, num_clusters, relabel_consecutive

_GAIN_CHUNK_ELEMENTS = 2**20  # (K, pixels) gains per chunk: 4 MiB of float32, in a core's cache
_SMALL_CLUSTER_GAIN = 16.0  # clusters no pixel can gain more than this from are searched last
_FULL_SWEEP_SHARE = 0.5  # search every pixel once this share of pixels is uncertain


def refine(rows: Tensor, labels: Tensor, mask: Tensor, max_iterations: int = 10) -> Tensor:
    """Move every pixel to the cluster it agrees with most, until nothing moves, a sweep does not
    lower the objective, or ``max_iterations`` sweeps: ``refine_sweeps``, or on CPUs the compiled
    kernel of ``dsc.rounding.compiled_cpu`` where one is built (the same moves). rows (B, N, d),
    labels and mask (B, N) → (B, N) labels 0..k−1 (−1 outside mask)."""
    if rows.device.type == "cpu" and rows.shape[1] > 0:
        library = compiled_cpu.refine_kernel(rows.shape[2], refine_sweeps)
        if library is not None:
            return compiled_cpu.refine_compiled(rows, labels, mask, max_iterations, library)
    return refine_sweeps(rows, labels, mask, max_iterations)


def refine_sweeps(rows: Tensor, labels: Tensor, mask: Tensor, max_iterations: int = 10) -> Tensor:
    """``refine`` by batched PyTorch sweeps, on any device.

    Pixel i in cluster c costs 2 Σ_{j∈c, j≠i} (1 − 2 v_i·v_j) of ‖V̂V̂ᵀ − A_r‖²_F, so its best
    cluster maximises 2 v_i·s_c − n_c (s_c, n_c: the cluster's sum and size without i) over the
    clusters KwikCluster gave its image. All pixels move at once, which need not lower the
    objective: a sweep that does not is undone and its image stops there (pixels on a boundary
    between two clusters would otherwise swap back and forth). rows (B, N, d), labels and mask
    (B, N) → (B, N) labels 0..k−1 (−1 outside mask).

    The first sweep searches every pixel and keeps the margin by which its cluster won. Moves
    change a cluster's gains by at most its drift 2 max‖v‖ ‖Δs_c‖ + |Δn_c|, so later sweeps search
    only the pixels whose margin the drift since could have overturned, and those that moved. The
    objective, less ‖G‖²_F which no move changes, is Σ n_c² − 2 Σ‖s_c‖² from the same sums, in
    float64.
    """
    slots = num_clusters(labels)
    if labels.shape[1] == 0 or slots == 1:
        return torch.where(mask, labels, -1)
    batch, num_pixels, dim = rows.shape
    rows = rows.contiguous()  # one copy of (B, d, N)-ordered rows makes every later pass faster
    labels = torch.where(mask, labels, -1)
    # An image's own clusters only: the batch's spare slots would be new, empty clusters that a
    # pixel could move into in a batch but not alone.
    own_slots = torch.arange(slots, device=labels.device) <= labels.amax(dim=1, keepdim=True)
    sums, sizes = cluster_sums(rows, labels, slots, dtype=torch.float64)  # updated as pixels move
    squared_norms = torch.einsum("bnd,bnd->bn", rows, rows)
    own_terms = 2.0 * squared_norms - 1.0
    max_norm = float(squared_norms.amax()) ** 0.5
    tolerance = 1e-4 * num_pixels + 1e-3  # above float32 rounding of gains of size ~N
    objective = _objective(sums, sizes)
    active = torch.ones(batch, dtype=torch.bool, device=labels.device)  # images still improving
    # A sweep moves a cluster's gains by at most its drift 2 max‖v‖ ‖Δs_c‖ + |Δn_c|. The credit,
    # twice the sum over sweeps of the largest drift, bounds how far two gains closed in since any
    # sweep; each pixel keeps its margin plus the credit when it was found (−inf: to search; inf:
    # never moves) and is searched again once the credit could have overturned that margin.
    keys = torch.where(mask, float("-inf"), float("inf"))
    credit = torch.zeros(batch, 1, device=rows.device)
    every_pixel_labelled = bool((labels >= 0).all())  # then no −1 labels to keep out of searches
    for sweep in range(max_iterations):
        bias = torch.where(own_slots, -sizes.float(), float("-inf"))  # (B, K)
        targets = 2.0 * sums.float()  # (B, K, d)
        uncertain = keys <= credit + tolerance
        every_pixel = sweep == 0 or int(uncertain.sum()) > _FULL_SWEEP_SHARE * uncertain.numel()
        image_of, pixel_of, joins = [], [], []
        for image in active.nonzero().squeeze(1).tolist():
            pixels = None if every_pixel else uncertain[image].nonzero().squeeze(1)
            current = _take(labels[image], pixels)
            searched = current if every_pixel_labelled or not every_pixel else current.clamp(min=0)
            best, margins = best_and_margins(
                _take(rows[image], pixels),
                searched,
                _take(own_terms[image], pixels),
                targets[image],
                bias[image],
                max_norm,
            )
            _put(keys[image], pixels, margins + credit[image])
            moves = best != searched
            if searched is not current:  # pixels outside the mask were searched as cluster 0
                moves &= current >= 0
            moves = moves.nonzero().squeeze(1)
            image_of.append(torch.full_like(moves, image))
            pixel_of.append(moves if pixels is None else pixels.index_select(0, moves))
            joins.append(best[moves])
        if every_pixel and not every_pixel_labelled:
            keys.masked_fill_(~mask, float("inf"))
        image_of, pixel_of, joins = (torch.cat(parts) if parts else labels.new_zeros(0)
                                     for parts in (image_of, pixel_of, joins))  # fmt: skip
        if len(image_of) == 0:
            break
        moved = image_of * num_pixels + pixel_of  # into the flattened (B·N) pixels
        leaves = labels.view(-1).index_select(0, moved)
        moved_rows = rows.view(-1, dim).index_select(0, moved)
        delta_sums, delta_sizes = _moves(moved_rows, image_of, leaves, joins, sums)
        candidate = _objective(sums + delta_sums, sizes + delta_sizes)
        accepted = candidate < objective  # the others undo this sweep and stop
        keep = accepted.index_select(0, image_of).nonzero().squeeze(1)
        moved, joins = moved.index_select(0, keep), joins.index_select(0, keep)
        delta_sums *= accepted.view(-1, 1, 1)
        delta_sizes *= accepted.view(-1, 1)
        sums += delta_sums
        sizes += delta_sizes
        sums.masked_fill_((sizes == 0).unsqueeze(-1), 0.0)  # exactly: empty clusters tie, first wins
        objective = torch.where(accepted, candidate, objective)
        labels.view(-1).index_copy_(0, moved, joins)
        keys.view(-1).index_fill_(0, moved, float("-inf"))  # in another cluster now: search again
        drift = 2.0 * max_norm * delta_sums.norm(dim=-1) + delta_sizes.abs()
        credit += 2.0 * drift.amax(dim=1, keepdim=True).float()
        if not bool(accepted.all()):
            active &= accepted
            keys[~active] = float("inf")
            if not bool(active.any()):
                break
    if not bool(((sizes == 0) & own_slots).any()):
        return labels
    return relabel_consecutive(labels, sizes)  # clusters that lost all their pixels leave gaps


def _take(values: Tensor, pixels: Tensor | None) -> Tensor:
    """``values`` (N, ...) at ``pixels`` (m,), or all of them for None (``index_select``: CPU
    advanced indexing costs several times more)."""
    return values if pixels is None else values.index_select(0, pixels)


def _put(values: Tensor, pixels: Tensor | None, new: Tensor) -> None:
    """Write ``new`` into ``values`` (N,) at ``pixels`` (m,), or everywhere for None."""
    if pixels is None:
        values.copy_(new)
    else:
        values.index_copy_(0, pixels, new)


def _moves(
    moved_rows: Tensor, image_of: Tensor, leaves: Tensor, joins: Tensor, sums: Tensor
) -> tuple[Tensor, Tensor]:
    """Changes of the cluster sums (B, K, d) float64 and sizes (B, K) when pixels of rows
    ``moved_rows`` (M, d) in images ``image_of`` (M,) leave clusters ``leaves`` for ``joins``."""
    batch, slots, dim = sums.shape
    moved_rows = moved_rows.double()
    delta_sums = torch.zeros(batch * slots, dim, dtype=sums.dtype, device=sums.device)
    delta_sums.index_add_(0, image_of * slots + leaves, moved_rows, alpha=-1.0)
    delta_sums.index_add_(0, image_of * slots + joins, moved_rows)
    delta_sizes = torch.bincount(image_of * slots + joins, minlength=batch * slots)
    delta_sizes -= torch.bincount(image_of * slots + leaves, minlength=batch * slots)
    return delta_sums.view(batch, slots, dim), delta_sizes.view(batch, slots).to(sums.dtype)


def _objective(sums: Tensor, sizes: Tensor) -> Tensor:
    """Σ_c n_c² − 2 Σ_c ‖s_c‖² per image (B,): ‖V̂V̂ᵀ − A_r‖²_F less ‖G‖²_F, which no move changes."""
    return sizes.square().sum(dim=1) - 2.0 * sums.square().sum(dim=(1, 2))


def best_and_margins(
    rows: Tensor, labels: Tensor, own_terms: Tensor, targets: Tensor, bias: Tensor, max_norm: float
) -> tuple[Tensor, Tensor]:
    """Each pixel's best cluster and the margin by which it wins, for one image's m pixels.

    rows (m, d) of norm ≤ ``max_norm``, labels (m,) their clusters (≥ 0), own_terms (m,) 2‖v_i‖² − 1,
    targets (K, d) the clusters' 2 s_c and bias (K,) −n_c (−inf for slots the image does not use).
    The gain of cluster c is 2 v_i·s_c − n_c, of the pixel's own cluster without the pixel itself. A
    pixel stays unless another cluster gains strictly more; among others the first of equal gains
    wins. Returns best (m,) and margins (m,): the best gain minus the second best, or less (inf
    with one cluster).

    No pixel gains more than ‖2 s_c‖ max‖v‖ − n_c from cluster c. When one cluster's bound is more
    than twice any other's (a background), its pixels whose own gain beats every other bound stay
    without further search. Of the rest, clusters whose bound is at most ``_SMALL_CLUSTER_GAIN``
    (KwikCluster's many tiny ones) are left out, and only pixels whose best gain does not beat the
    largest such bound, or which belong to such a cluster, get the gains of all clusters. Bounds
    stand in for the gains left out, so margins can be smaller than the exact ones.
    """
    limits = targets.norm(dim=1) * max_norm + bias  # (K,)
    if limits.shape[0] == 1:
        return labels.clone(), torch.full(labels.shape, float("inf"), device=rows.device)
    (first, second), (dominant, _) = limits.topk(2)
    if not bool(first > 2.0 * second.clamp(min=0.0)):
        return _search(rows, labels, own_terms, targets, bias, limits)
    margins = torch.mv(rows, targets[dominant]).add_(bias[dominant] - second).sub_(own_terms)
    best = labels.clone()
    pixels = ((labels != dominant) | (margins <= 0)).nonzero().squeeze(1)
    if len(pixels):
        found = _search(
            *(part.index_select(0, pixels) for part in (rows, labels, own_terms)), targets, bias, limits
        )
        best.index_copy_(0, pixels, found[0])
        margins.index_copy_(0, pixels, found[1])
    return best, margins


def _search(
    rows: Tensor, labels: Tensor, own_terms: Tensor, targets: Tensor, bias: Tensor, limits: Tensor
) -> tuple[Tensor, Tensor]:
    """``best_and_margins`` by the gains of the clusters whose bound ``limits`` (K,) exceeds
    ``_SMALL_CLUSTER_GAIN``, then of all clusters for the pixels those do not settle."""
    small = limits <= _SMALL_CLUSTER_GAIN
    if not bool(small.any()) or bool(small.all()):
        best, margins, _ = _best_among(rows, labels, own_terms, targets, bias, float("-inf"))
        return best, margins
    kept = (~small).nonzero().squeeze(1)
    position = labels.new_full(bias.shape, -1)
    position[kept] = torch.arange(len(kept), device=labels.device)
    floor = float(limits[small].amax())
    own = position.index_select(0, labels)
    best, margins, unsure = _best_among(rows, own, own_terms, targets[kept], bias[kept], floor)
    best = kept.index_select(0, best.clamp(min=0))
    pixels = unsure.nonzero().squeeze(1)
    if len(pixels):
        found = _best_among(
            *(part.index_select(0, pixels) for part in (rows, labels, own_terms)),
            targets,
            bias,
            float("-inf"),
        )
        best.index_copy_(0, pixels, found[0])
        margins.index_copy_(0, pixels, found[1])
    return best, margins


def _best_among(
    rows: Tensor, own: Tensor, own_terms: Tensor, targets: Tensor, bias: Tensor, floor: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``best_and_margins`` over the K' clusters of ``targets`` (K', d) and ``bias`` (K',) only;
    own (m,) each pixel's position among them (−1: not among them), ``floor`` a bound on every
    other cluster's gain (−inf when there is none). Returns best (m,) positions, margins (m,) and
    unsure (m,): pixels whose own cluster is not listed or whose best gain does not beat ``floor``,
    for which best and margins mean nothing."""
    num_pixels = rows.shape[0]
    chunk = max(64, _GAIN_CHUNK_ELEMENTS // max(targets.shape[0], 1))
    best = own.clone()
    margins = torch.empty(num_pixels, device=rows.device)
    unsure = torch.empty(num_pixels, dtype=torch.bool, device=rows.device)
    bounded = floor > float("-inf")
    for start in range(0, num_pixels, chunk):
        part = slice(start, start + chunk)
        # (K', m): bmm writes the product in this layout at a fraction of mm's cost on CPUs
        gains = torch.bmm(targets.unsqueeze(0), rows[part].T.unsqueeze(0))[0].add_(bias.unsqueeze(1))
        index = own[part].clamp(min=0).unsqueeze(0)  # pixels not listed are unsure: any index will do
        stay = gains.gather(0, index).squeeze(0).sub_(own_terms[part])
        other = gains.scatter_(0, index, float("-inf")).amax(dim=0)
        margin = torch.sub(stay, other.clamp(min=floor) if bounded else other, out=margins[part])
        movers = (margin < 0).nonzero().squeeze(1)  # another cluster gains more, or unsure
        if len(movers):
            gains_of_movers = gains.index_select(1, movers)
            first, index = gains_of_movers.max(dim=0)  # the first of equal gains, as argmax
            second = gains_of_movers.scatter_(0, index.unsqueeze(0), float("-inf")).amax(dim=0)
            best.index_copy_(0, start + movers, index)
            stays = stay.index_select(0, movers)
            margin.index_copy_(0, movers, first - torch.maximum(second, stays).clamp(min=floor))
        unsure[part] = own[part] < 0
        if bounded:
            unsure[part] |= torch.maximum(stay, other) <= floor
    return best, margins, unsure


def kwikcluster_refine(
    rows: Tensor,
    threshold: float = 0.5,
    max_iterations: int = 10,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    pixel_ids: Tensor | None = None,
) -> Tensor:
    """KwikCluster, then ``refine`` to a fixed point or ``max_iterations`` sweeps.

    Shapes and arguments as ``dsc.rounding.kwikcluster``; never worse than KwikCluster alone by
    the objective ‖V̂V̂ᵀ − A_r‖²_F.
    """
    rows, mask, unbatched = as_batch(rows, mask, check_finite=False)  # kwikcluster_labels checks
    labels = kwikcluster_labels(rows, mask, threshold, draw_seed(generator), None, pixel_ids)
    labels = refine(rows, labels, mask, max_iterations)
    return labels.squeeze(0) if unbatched else labels
