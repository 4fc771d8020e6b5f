"""Paired differences over seeds: the runs of two methods with one seed share their data order and
initial weights, so their difference per seed is the unit of comparison (Musgrave et al., 2020).
The 95 % interval is Student's t over the n paired differences (n − 1 degrees of freedom)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TypedDict

from scipy import stats

TEST = "paired t, 95 % interval over seeds"
CONFIDENCE = 0.95


class PairedDifference(TypedDict):
    mean: float  # the mean of a − b over the seeds
    low: float  # the interval's ends
    high: float
    n: int
    differences: list[float]


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> PairedDifference | None:
    """The mean of a[i] − b[i] with its two-sided t interval; None with fewer than two pairs or runs
    of unequal counts (they are not paired). Equal differences give an interval of width 0."""
    if len(a) != len(b) or len(a) < 2:
        return None
    differences = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(differences)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(differences) - 1)) * statistics.stdev(differences)
    half /= math.sqrt(len(differences))
    return {
        "mean": mean,
        "low": mean - half,
        "high": mean + half,
        "n": len(differences),
        "differences": differences,
    }


def excludes_zero(difference: PairedDifference | None) -> bool:
    """Whether the interval lies wholly above or below 0: a difference the seeds support."""
    return difference is not None and (difference["low"] > 0 or difference["high"] < 0)


def format_difference(difference: PairedDifference | None, digits: int = 3) -> str:
    """``+0.052 [0.031, 0.073]``, or ``-`` where there is no paired difference."""
    if difference is None:
        return "-"
    return (
        f"{difference['mean']:+.{digits}f} [{difference['low']:.{digits}f}, {difference['high']:.{digits}f}]"
    )
