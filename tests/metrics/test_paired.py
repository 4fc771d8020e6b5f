"""Paired t intervals over seeds, against scipy's paired t-test."""

import pytest
from scipy import stats

from dsc.metrics.paired import excludes_zero, format_difference, paired_difference


def test_the_interval_is_scipys_paired_t_test():
    a, b = [0.71, 0.74, 0.69, 0.73], [0.66, 0.70, 0.66, 0.67]
    difference = paired_difference(a, b)
    reference = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert difference["mean"] == pytest.approx(0.045)
    assert (difference["low"], difference["high"]) == pytest.approx((reference.low, reference.high))
    assert difference["n"] == 4 and excludes_zero(difference)
    assert format_difference(difference).startswith("+0.045 [")


def test_pairing_removes_what_seeds_share():
    """The seeds move both methods alike: unpaired spreads overlap, the paired difference does not."""
    a, b = [0.60, 0.70, 0.80], [0.59, 0.69, 0.785]
    difference = paired_difference(a, b)
    assert excludes_zero(difference) and difference["low"] > 0
    assert not excludes_zero(paired_difference([0.6, 0.7, 0.8], [0.62, 0.68, 0.8]))


def test_fewer_than_two_pairs_or_unpaired_runs_give_none():
    assert paired_difference([0.5], [0.4]) is None
    assert paired_difference([0.5, 0.6], [0.4, 0.5, 0.6]) is None
    assert not excludes_zero(None) and format_difference(None) == "-"
