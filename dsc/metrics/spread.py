"""A figure over seeds: its mean, sample standard deviation, count and values, and how it is written
(``0.912 ± 0.004``). ``dsc.table1`` and ``dsc.sweep_report`` report every repeated figure this way."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import TypedDict


class Spread(TypedDict):
    mean: float
    std: float | None  # the sample std (n − 1); None for one value
    n: int
    values: list[float]


def spread(values: Iterable[float | None]) -> Spread | None:
    """The spread of the values that are not None; None when none is."""
    present = [float(value) for value in values if value is not None]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else None
    return {"mean": statistics.fmean(present), "std": std, "n": len(present), "values": present}


def format_spread(summary: Spread | None, digits: int = 3) -> str:
    """``mean ± std`` (just the mean for one value; ``-`` for none)."""
    if summary is None:
        return "-"
    mean = f"{summary['mean']:.{digits}f}"
    return mean if summary["std"] is None else f"{mean} ± {summary['std']:.{digits}f}"
