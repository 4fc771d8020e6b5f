"""Pairwise partition scores from contingency tables: O(n) per image, never n² pairs.

A pair of distinct pixels is a true positive when both partitions put it in one segment, a false
positive when only the prediction does, a false negative when only the target does, and a true
negative otherwise. With n_ij the contingency table of an image, a_i its row and b_j its column
sums, TP = Σ C(n_ij, 2), TP + FP = Σ C(a_i, 2), TP + FN = Σ C(b_j, 2) and all pairs are C(n, 2).
These are the paper's pairwise accuracy, precision and recall (Table 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsc.ops.grouping import contingency_cells, group


def _pairs(counts: Tensor) -> Tensor:
    return counts * (counts - 1) // 2


def _pair_counts_of_cells(
    num_images: int, image: Tensor, pred: Tensor, target: Tensor, size: Tensor
) -> Tensor:
    """(B, 4) int64 pair confusion counts from the non-empty contingency cells of each image."""

    def per_image(values: Tensor, of_image: Tensor = image) -> Tensor:
        return torch.zeros(num_images, dtype=torch.int64, device=size.device).index_add_(0, of_image, values)

    def marginal_pairs(label: Tensor) -> Tensor:  # Σ over the image's labels of C(label size, 2)
        group_of_cell, image_of_group, _ = group(image, label)
        sizes = torch.zeros(len(image_of_group), dtype=torch.int64, device=size.device)
        return per_image(_pairs(sizes.index_add_(0, group_of_cell, size)), image_of_group)

    both_same = per_image(_pairs(size))
    false_positives = marginal_pairs(pred) - both_same
    false_negatives = marginal_pairs(target) - both_same
    true_negatives = _pairs(per_image(size)) - both_same - false_positives - false_negatives
    return torch.stack([both_same, false_positives, false_negatives, true_negatives], dim=1)


def pair_counts_per_image(preds: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """Pair confusion counts of every image, over all and over foreground pairs.

    preds, target: (B, H, W) (or any (B, ...)) integer segment ids. Pixels whose target is
        ``ignore_index`` are left out; the foreground row also leaves out target 0 (background).
    Returns int64 (B, 2, 4): per image, rows (all valid pixels, foreground pixels), columns (true
    positives, false positives, false negatives, true negatives), each a number of unordered pairs
    of distinct pixels. One contingency table per image serves both rows: O(n), no sort.
    """
    if preds.shape != target.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
    num_images = target.shape[0]
    cells = contingency_cells(preds.reshape(num_images, -1), target.reshape(num_images, -1))
    valid = cells[2] != ignore_index
    foreground = valid & (cells[2] != 0)
    return torch.stack(
        [_pair_counts_of_cells(num_images, *(c[keep] for c in cells)) for keep in (valid, foreground)],
        dim=1,
    )


def pair_counts(preds: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """``pair_counts_per_image`` summed over the batch: int64 (2, 4)."""
    return pair_counts_per_image(preds, target, ignore_index).sum(dim=0)


def partition_loss(preds: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """ℓ(V_r V_rᵀ, A) = ‖V_r V_rᵀ − A‖²_F / n², averaged over images with valid pixels: the loss of
    a rounded partition (one-hot rows V_r) in the units of ``spectral_loss``, for Theorem 2.2.

    Both matrices are 0/1 with a unit diagonal, so the squared norm counts the ordered pairs on
    which the partitions disagree: 2 (FP + FN). preds, target: (B, H, W). Returns a float64 scalar.
    """
    counts = pair_counts_per_image(preds, target, ignore_index)[:, 0]  # (B, 4)
    pixels = target.reshape(target.shape[0], -1).ne(ignore_index).sum(dim=1)
    per_image = 2.0 * (counts[:, 1] + counts[:, 2]).double() / pixels.clamp(min=1).double().square()
    has_pixels = pixels > 0
    return torch.where(has_pixels, per_image, 0.0).sum() / has_pixels.sum().clamp(min=1)


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator as float64, 0 where the denominator is 0 (no such pairs)."""
    numerator, denominator = numerator.double(), denominator.double()
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), 0.0)


def _scores(counts: Tensor) -> dict[str, Tensor]:
    true_pos, false_pos, false_neg, true_neg = counts.unbind()
    return {
        "accuracy": _ratio(true_pos + true_neg, counts.sum()),
        "precision": _ratio(true_pos, true_pos + false_pos),
        "recall": _ratio(true_pos, true_pos + false_neg),
        "f1": _ratio(2 * true_pos, 2 * true_pos + false_pos + false_neg),
    }


def scores_from_pair_counts(counts: Tensor) -> dict[str, Tensor]:
    """Scores from ``pair_counts``' (2, 4) output: ``accuracy``, ``precision``, ``recall``, ``f1``
    over all valid pairs and the same prefixed ``fg_`` over foreground pairs.

    Each is a float64 scalar, 0 when its denominator is (no pairs of that kind), never NaN.
    """
    overall, foreground = counts.unbind()
    return _scores(overall) | {f"fg_{name}": value for name, value in _scores(foreground).items()}


def pairwise_scores(preds: Tensor, target: Tensor, ignore_index: int = 255) -> dict[str, Tensor]:
    """Functional form of ``PairwiseScores`` for one batch of (B, H, W) label maps."""
    return scores_from_pair_counts(pair_counts(preds, target, ignore_index))
