import numpy as np
import pytest
import torch
from sklearn.metrics.cluster import pair_confusion_matrix

from dsc.losses import spectral_loss
from dsc.metrics import PairwiseScores, pair_counts, pair_counts_per_image, pairwise_scores, partition_loss

VOID = 255


def sklearn_counts(preds, target, foreground_only=False):
    """(tp, fp, fn, tn) in unordered pairs, summed over images, from scikit-learn."""
    total = np.zeros(4, dtype=np.int64)
    for image_preds, image_target in zip(preds.flatten(1).numpy(), target.flatten(1).numpy(), strict=True):
        keep = image_target != VOID
        if foreground_only:
            keep &= image_target != 0
        if keep.sum() < 2:
            continue
        (tn, fp), (fn, tp) = pair_confusion_matrix(image_target[keep], image_preds[keep]) // 2
        total += [tp, fp, fn, tn]
    return total


def random_maps(seed, batch=4, size=(9, 11), segments=5):
    generator = torch.Generator().manual_seed(seed)
    preds = torch.randint(0, segments, (batch, *size), generator=generator)
    target = torch.randint(0, segments, (batch, *size), generator=generator)
    target[torch.rand(batch, *size, generator=generator) < 0.2] = VOID
    return preds, target


@pytest.mark.parametrize("seed", range(5))
def test_counts_match_sklearn(seed):
    preds, target = random_maps(seed)
    counts = pair_counts(preds, target).numpy()
    np.testing.assert_array_equal(counts[0], sklearn_counts(preds, target))
    np.testing.assert_array_equal(counts[1], sklearn_counts(preds, target, foreground_only=True))


def test_scores_from_sklearn_counts():
    preds, target = random_maps(11)
    scores = pairwise_scores(preds, target)
    for prefix, foreground_only in (("", False), ("fg_", True)):
        tp, fp, fn, tn = sklearn_counts(preds, target, foreground_only)
        assert scores[f"{prefix}accuracy"].item() == pytest.approx((tp + tn) / (tp + fp + fn + tn))
        assert scores[f"{prefix}precision"].item() == pytest.approx(tp / (tp + fp))
        assert scores[f"{prefix}recall"].item() == pytest.approx(tp / (tp + fn))
        assert scores[f"{prefix}f1"].item() == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_identical_partitions_score_one_and_names_do_not_matter():
    _, target = random_maps(3)
    renamed = torch.where(target == VOID, 7, (target * 37 + 3) % 1000)
    scores = pairwise_scores(renamed, target)
    assert all(value.item() == 1.0 for value in scores.values())


def test_empty_and_all_void_give_zeros_not_nan():
    target = torch.full((2, 4, 4), VOID)
    scores = pairwise_scores(torch.zeros_like(target), target)
    assert all(value.item() == 0.0 for value in scores.values())


def test_metric_accumulates_batches_and_merges_like_ranks():
    batches = [random_maps(seed) for seed in range(4)]
    whole = PairwiseScores()
    for preds, target in batches:
        whole.update(preds, target)

    # Two "ranks" each seeing half the batches, reduced with the states' sum reduction.
    ranks = [PairwiseScores(), PairwiseScores()]
    for index, (preds, target) in enumerate(batches):
        ranks[index % 2].update(preds, target)
    ranks[0].merge_state(ranks[1])

    all_preds, all_target = (torch.cat(parts) for parts in zip(*batches, strict=True))
    expected = sklearn_counts(all_preds, all_target)
    np.testing.assert_array_equal(whole.counts[0].numpy(), expected)
    for name, value in whole.compute().items():
        assert ranks[0].compute()[name] == value
    assert whole._reductions["counts"].__name__.endswith("sum")


def test_per_image_counts_match_sklearn_image_by_image():
    preds, target = random_maps(21)
    per_image = pair_counts_per_image(preds, target).numpy()
    for index in range(len(preds)):
        np.testing.assert_array_equal(
            per_image[index, 0], sklearn_counts(preds[index : index + 1], target[index : index + 1])
        )


def test_partition_loss_is_the_spectral_loss_of_one_hot_rows():
    """Theorem 2.2's ℓ(V_r V_rᵀ, A): the rounded partition as one-hot embedding rows."""
    preds, target = random_maps(5, segments=4)
    target[1] = VOID  # an image without valid pixels is skipped
    one_hot_rows = torch.nn.functional.one_hot(preds, 4).permute(0, 3, 1, 2).double()
    expected = spectral_loss(one_hot_rows, target)
    torch.testing.assert_close(partition_loss(preds, target), expected)
    assert partition_loss(target, target).item() == 0.0
