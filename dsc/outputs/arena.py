"""The arena's tables and picture (``python -m dsc.table1 methods=arena``): every method's class-
agnostic PQ under every rounding, paired differences over seeds, and PQ against the embedding
dimension d. Rows come from ``dsc.training.scoring.RoundingScores`` of each method's seeds, in seed
order, so that values of one seed pair up across methods and roundings."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from dsc.metrics import keys
from dsc.metrics.paired import TEST, PairedDifference, excludes_zero, format_difference, paired_difference
from dsc.metrics.spread import Spread, format_spread, spread
from dsc.outputs.files import replacing
from dsc.training.scoring import RoundingScores

log = logging.getLogger(__name__)
AGNOSTIC_PQ = "agnostic/pq"
OWN = "own"  # the column of each model's own rounding (its recipe's)
NOT_APPLICABLE = "n/a"

# A rounding's cell: the spread over seeds, or why it cannot read the model.
Cell = Spread | str


def rounding_rows(
    scored: Mapping[str, Sequence[RoundingScores]], roundings: Sequence[str]
) -> dict[str, dict[str, Cell]]:
    """method → {``own`` and each rounding: agnostic PQ over the seeds, or the reason it is n/a}."""
    rows: dict[str, dict[str, Cell]] = {}
    for method, runs in scored.items():
        row: dict[str, Cell] = {OWN: spread(run.metrics.get(keys.AGNOSTIC_INSTANCES + "pq") for run in runs)}
        for name in roundings:
            reason = next((run.unreadable[name] for run in runs if name in run.unreadable), None)
            key = f"{keys.ROUNDINGS}{name}/{AGNOSTIC_PQ}"
            row[name] = reason if reason is not None else spread(run.metrics.get(key) for run in runs)
        rows[method] = row
    return rows


def against_own(rows: Mapping[str, Mapping[str, Cell]]) -> dict[str, dict[str, PairedDifference | None]]:
    """method → rounding → the paired difference of its agnostic PQ from the own rounding's."""
    differences = {}
    for method, row in rows.items():
        own = row[OWN]
        differences[method] = {
            name: paired_difference(cell["values"], own["values"])
            if isinstance(cell, dict) and isinstance(own, dict)
            else None
            for name, cell in row.items()
            if name != OWN
        }
    return differences


def format_roundings(rows: Mapping[str, Mapping[str, Cell]], split: str) -> str:
    """The method × rounding table of agnostic PQ; ``+``/``−`` where the paired interval against
    the method's own rounding lies above/below 0; n/a cells with their reasons below."""
    if not rows:
        return ""
    names = list(next(iter(rows.values())))
    differences = against_own(rows)
    width = max(len(method) for method in rows) + 2
    cell_width = max(16, *(len(name) + 1 for name in names))
    lines = [
        f"Class-agnostic PQ on the {split} split by rounding (one network pass scores every rounding)",
        "".ljust(width) + "".join(name.rjust(cell_width) for name in names),
    ]
    reasons: dict[str, str] = {}
    for method, row in rows.items():
        cells = []
        for name, cell in row.items():
            if isinstance(cell, str):
                mark = reasons.setdefault(cell, "†" * (len(reasons) + 1))
                cells.append(f"{NOT_APPLICABLE}{mark}")
                continue
            difference = differences[method].get(name)
            sign = " "
            if excludes_zero(difference):
                sign = "+" if difference["mean"] > 0 else "−"
            cells.append(format_spread(cell) + sign)
        lines.append(method.ljust(width) + "".join(cell.rjust(cell_width) for cell in cells))
    lines.append(f"+/−: above/below the model's own rounding ({OWN}) by a {TEST} that excludes 0")
    lines += [f"{mark} {NOT_APPLICABLE}: {reason}" for reason, mark in reasons.items()]
    return "\n".join(lines)


def paired_to_leader(
    rows: Mapping[str, Mapping[str, Spread | None]], metric: str
) -> tuple[str | None, dict[str, PairedDifference | None]]:
    """The method with the best mean of ``metric`` and every other's paired difference from it."""
    present = {method: row[metric] for method, row in rows.items() if row.get(metric)}
    if not present:
        return None, {}
    leader = max(present, key=lambda method: present[method]["mean"])
    return leader, {
        method: paired_difference(summary["values"], present[leader]["values"])
        for method, summary in present.items()
        if method != leader
    }


def format_paired(rows: Mapping[str, Mapping[str, Spread | None]], metrics: Mapping[str, str]) -> str:
    """For each metric (name → header): the leader and every other method's paired difference."""
    lines = [f"Paired differences from the leader ({TEST}; * the interval excludes 0)"]
    for metric, header in metrics.items():
        leader, differences = paired_to_leader(rows, metric)
        if leader is None or not any(differences.values()):
            continue
        lines.append(f"{header}: {leader} leads")
        for method, difference in differences.items():
            star = "*" if excludes_zero(difference) else ""
            lines.append(f"  {method}: {format_difference(difference)}{star}")
    return "\n".join(lines) if len(lines) > 1 else ""


def paired_between(
    rows: Mapping[str, Mapping[str, Spread | None]], a: str, b: str, metrics: Mapping[str, str]
) -> dict[str, PairedDifference | None]:
    """Method ``a``'s paired difference from method ``b`` in each metric both rows have."""
    return {
        metric: paired_difference(rows[a][metric]["values"], rows[b][metric]["values"])
        for metric in metrics
        if rows[a].get(metric) and rows[b].get(metric)
    }


def format_between(
    differences: Mapping[str, PairedDifference | None], a: str, b: str, metrics: Mapping[str, str]
) -> str:
    """``joint − cross-entropy + CC (paired t, …): PQ +0.062 [0.011, 0.113]*, …``; "" when none."""
    cells = [
        f"{metrics[metric]} {format_difference(difference)}{'*' if excludes_zero(difference) else ''}"
        for metric, difference in differences.items()
        if difference is not None
    ]
    if not cells:
        return ""
    return f"{a} − {b} ({TEST}; * the interval excludes 0): " + ", ".join(cells)


def draw_arena(
    rows: Mapping[str, Mapping[str, Cell]],
    by_dimension: Mapping[str, Mapping[int, Spread | None]],
    path: Path,
    split: str,
) -> bool:
    """``arena.png``: agnostic PQ per method × rounding with ± std bars, and (with several d) agnostic
    PQ against d per loss. False, with a warning naming the extra, where matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("arena.png needs matplotlib: pip install 'dsc[arena]'; the tables are written")
        return False
    panels = 2 if any(len(points) > 1 for points in by_dimension.values()) else 1
    figure, axes = plt.subplots(1, panels, figsize=(7 + 4 * (panels - 1), 4.2), squeeze=False)
    bars = axes[0][0]
    names = list(next(iter(rows.values()))) if rows else []
    step = 0.8 / max(len(names), 1)
    for offset, name in enumerate(names):
        positions, heights, errors = [], [], []
        for index, row in enumerate(rows.values()):
            cell = row[name]
            if isinstance(cell, dict):
                positions.append(index + (offset - (len(names) - 1) / 2) * step)
                heights.append(cell["mean"])
                errors.append(cell["std"] or 0.0)
        if positions:  # a rounding that read no model has no bar and no legend entry
            bars.bar(positions, heights, step, yerr=errors, capsize=2, label=name, color=f"C{offset}")
    bars.set_xticks(range(len(rows)), list(rows), rotation=20, ha="right", fontsize=8)
    bars.set_ylabel(f"class-agnostic PQ ({split})")
    bars.set_title("by method and rounding (mean ± std over seeds)", fontsize=9)
    bars.legend(fontsize=7, ncol=2)
    if panels == 2:
        lines = axes[0][1]
        for loss, points in by_dimension.items():
            measured = sorted((d, summary) for d, summary in points.items() if summary)
            lines.errorbar(
                [d for d, _ in measured],
                [summary["mean"] for _, summary in measured],
                yerr=[summary["std"] or 0.0 for _, summary in measured],
                marker="o",
                capsize=2,
                label=loss,
            )
        lines.set_xscale("log", base=2)
        lines.set_xlabel("embedding dimension d")
        lines.set_ylabel(f"class-agnostic PQ ({split}, own rounding)")
        lines.set_title("against d per loss", fontsize=9)
        lines.legend(fontsize=7)
    figure.tight_layout()
    with replacing(path) as partial:
        figure.savefig(partial, dpi=110, format="png")
    plt.close(figure)
    return True
