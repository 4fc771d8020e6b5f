"""KwikCluster followed by local improvement: the paper's "locally optimal projection" (Sec. 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.losses.closed_form import squared_frobenius
from dsc.rounding.hashing import draw_seed
from dsc.rounding.kwikcluster import as_batch, kwikcluster_labels
from dsc.rounding.postprocess import cluster_sums, num_clusters, relabel_consecutive

_GAIN_CHUNK_ELEMENTS = 2**18  # (B, pixels, K) gains per chunk: 1 MiB of float32, in a core's cache
_FULL_SWEEP_SHARE = 0.25  # recompute every pixel's gains once this share of pixels is uncertain


def _gains(rows: Tensor, labels: Tensor, targets: Tensor, bias: Tensor, own_term: Tensor) -> Tensor:
    """Gains 2 v_i·s_c − n_c (B, m, K) of (B, m, d) rows, each pixel's own cluster without itself."""
    gain = torch.baddbmm(bias, rows, targets)
    return gain.scatter_add_(2, labels.clamp(min=0).unsqueeze(-1), -own_term.unsqueeze(-1))


def _best_and_margins(
    rows: Tensor, labels: Tensor, targets: Tensor, bias: Tensor, own_term: Tensor
) -> tuple[Tensor, Tensor]:
    """Every pixel's best cluster (B, N) and by how much it beats the second best (B, N), the
    gains computed in chunks that stay in the cache."""
    batch, num_pixels, _ = rows.shape
    slots = targets.shape[2]
    chunk = max(64, _GAIN_CHUNK_ELEMENTS // max(batch * slots, 1))
    best = torch.empty_like(labels)
    margins = torch.full(labels.shape, float("inf"), device=rows.device)
    for start in range(0, num_pixels, chunk):
        part = slice(start, start + chunk)
        gain = _gains(rows[:, part], labels[:, part], targets, bias, own_term[:, part])
        first, index = gain.max(dim=-1)  # the first of equal gains, as argmax: batch-independent
        best[:, part] = index
        if slots > 1:
            second = gain.scatter_(2, index.unsqueeze(-1), float("-inf")).amax(dim=-1)
            margins[:, part] = first - second
    return best, margins


def refine(rows: Tensor, labels: Tensor, mask: Tensor, max_iterations: int = 10) -> Tensor:
    """Move every pixel to the cluster it agrees with most, until nothing moves or the cap.

    Pixel i in cluster c costs 2 Σ_{j∈c, j≠i} (1 − 2 v_i·v_j) of ‖V̂V̂ᵀ − A_r‖²_F, so its best
    cluster maximises 2 v_i·s_c − n_c (s_c, n_c: the cluster's sum and size without i) over the
    clusters KwikCluster gave its image. All pixels move at once, which need not lower the
    objective every time, so each image keeps the best labels seen. rows (B, N, d), labels and
    mask (B, N) → (B, N) labels 0..k−1 (−1 outside mask).

    Only the first sweep computes every pixel's gains, with the margin by which its best cluster
    wins. Later sweeps update the cluster sums from the pixels that moved and recompute only the
    pixels whose margin the sums' changes since could have overturned (a gain moves by at most
    2‖Δs_c‖ + |Δn_c| for a unit row) and the pixels that moved, which in practice are few; when
    they are many, every pixel's gains again. The objective ‖G‖²_F − 2 Σ‖s_c‖² + Σ n_c² comes from
    the same sums, in float64.
    """
    if labels.shape[1] == 0:
        return labels
    batch, num_pixels, _ = rows.shape
    slots = num_clusters(labels)
    # An image's own clusters only: the batch's spare slots would be new, empty clusters that a
    # pixel could move into in a batch but not alone.
    own_slots = torch.arange(slots, device=labels.device) <= labels.amax(dim=1, keepdim=True)
    valid_rows = torch.where(mask.unsqueeze(-1), rows, 0.0)
    # ‖G‖²_F is the same in every sweep: its float32 rounding shifts all objectives alike.
    gram = (valid_rows.transpose(1, 2) @ valid_rows).double()
    rows64 = valid_rows.double()
    sums, sizes = cluster_sums(rows64, labels, slots)  # float64, updated as pixels move
    own_term = 2.0 * rows.square().sum(dim=-1) - 1.0
    row_bound = 2.0 * float(rows.norm(dim=-1).amax())
    tolerance = 1e-4 * num_pixels + 1e-3  # above float32 rounding of gains of size ~N
    best_labels = labels
    best_objective = torch.full((batch,), float("inf"), dtype=torch.float64, device=rows.device)
    margins = drift = moved_since = None
    for sweep in range(max_iterations + 1):
        objective = squared_frobenius(gram, sums, sizes)
        better = objective < best_objective
        best_labels = torch.where(better.unsqueeze(1), labels, best_labels)
        best_objective = torch.minimum(objective, best_objective)
        if sweep == max_iterations:
            break
        bias = torch.where(own_slots, -sizes.float(), float("-inf")).unsqueeze(1)  # (B, 1, K)
        targets = 2.0 * sums.float().transpose(1, 2)  # (B, d, K)
        uncertain = None
        if margins is not None:
            uncertain = mask & (moved_since | (margins <= drift.amax(dim=1, keepdim=True) * 2 + tolerance))
        if uncertain is None or int(uncertain.sum()) > _FULL_SWEEP_SHARE * uncertain.numel():
            best, margins = _best_and_margins(rows, labels, targets, bias, own_term)
            drift = torch.zeros(batch, slots, device=rows.device)
            moved_since = torch.zeros_like(mask)
        else:
            best = labels.clone()
            for image in range(batch):
                pixels = uncertain[image].nonzero().squeeze(1)
                if len(pixels):
                    picked = (rows[image, pixels], labels[image, pixels], own_term[image, pixels])
                    gain = _gains(picked[0][None], picked[1][None], targets[image][None], bias[image][None],
                                  picked[2][None])  # fmt: skip
                    best[image, pixels] = gain[0].argmax(dim=-1)
        moved = mask & (best != labels)
        if not bool(moved.any()):
            break
        image_of, pixel_of = moved.nonzero(as_tuple=True)
        moved_rows = rows64[image_of, pixel_of]
        delta_sums = torch.zeros_like(sums)
        delta_sums.index_put_((image_of, labels[image_of, pixel_of]), -moved_rows, accumulate=True)
        delta_sums.index_put_((image_of, best[image_of, pixel_of]), moved_rows, accumulate=True)
        delta_sizes = torch.zeros_like(sizes)
        ones = torch.ones_like(image_of, dtype=sizes.dtype)
        delta_sizes.index_put_((image_of, labels[image_of, pixel_of]), -ones, accumulate=True)
        delta_sizes.index_put_((image_of, best[image_of, pixel_of]), ones, accumulate=True)
        sums += delta_sums
        sizes += delta_sizes
        drift += (row_bound * delta_sums.norm(dim=-1) + delta_sizes.abs()).float()
        moved_since |= moved
        labels = torch.where(mask, best, -1)
    return relabel_consecutive(best_labels)


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
    rows, mask, unbatched = as_batch(rows, mask)
    labels = kwikcluster_labels(rows, mask, threshold, draw_seed(generator), None, pixel_ids)
    labels = refine(rows, labels, mask, max_iterations)
    return labels.squeeze(0) if unbatched else labels
