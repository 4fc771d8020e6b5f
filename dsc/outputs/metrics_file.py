"""The end-of-run report: a metrics table on the console and ``metrics.json`` on disk."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

from dsc.metrics import keys
from dsc.outputs.files import write_text

log = logging.getLogger(__name__)
SCORES = ("accuracy", "precision", "recall", "f1")
COLUMNS = (
    ("instances", keys.PAIRWISE),
    ("semantic oracle", keys.SEMANTIC_ORACLE),
    ("fg instances", keys.PAIRWISE + keys.FG),
    ("fg semantic oracle", keys.SEMANTIC_ORACLE + keys.FG),
)


UNSEEN_COLUMNS = (
    ("fg unseen classes", keys.UNSEEN + keys.FG),
    ("fg seen classes", keys.SEEN + keys.FG),
)


INSTANCE_SCORES = ("mask_ap", "mask_ap50", "mask_ap75", "pq", "sq", "rq")
INSTANCE_COLUMNS = (
    ("instances", keys.INSTANCES),
    ("class-agnostic", keys.AGNOSTIC_INSTANCES),
    ("sem. oracle + CC", keys.ORACLE_CC),
    ("agnostic oracle + CC", keys.ORACLE_CC + "agnostic/"),
)


def _table(metrics: Mapping[str, float], columns: tuple, rows: tuple[str, ...]) -> list[str]:
    width = max(len(title) for title, _ in columns) + 2
    lines = ["".ljust(10) + "".join(title.rjust(width) for title, _ in columns)]
    for row in rows:
        cells = [_cell(prefix + row, metrics.get(prefix + row)) for _, prefix in columns]
        lines.append(row.ljust(10) + "".join(cell.rjust(width) for cell in cells))
    return lines


def _cell(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return keys.UNDEFINED if keys.is_undefined(name, value) else f"{value:.4f}"


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """Pairwise scores of the rounded instances beside those of the ground-truth semantic
    partition, over all valid pairs and over foreground pairs (and, after training without some
    classes, over their objects and the others'); then, where scored, mask AP and PQ of the
    instances and of the semantic oracle + connected components. Missing entries show as '-',
    undefined ones (mask AP without any true instance) as 'n/a'."""
    columns = COLUMNS + (UNSEEN_COLUMNS if any(k.startswith(keys.UNSEEN) for k in metrics) else ())
    lines = _table(metrics, columns, SCORES)
    if keys.AGNOSTIC_INSTANCES + "pq" in metrics:
        lines += ["", *_table(metrics, INSTANCE_COLUMNS, INSTANCE_SCORES)]
    return "\n".join(lines)


HEADLINE = (
    ("fg F1", keys.MONITOR),
    ("agnostic PQ", keys.AGNOSTIC_INSTANCES + "pq"),
    ("PQ", keys.INSTANCES + "pq"),
)


def headline(metrics: Mapping[str, float | None]) -> str:
    """A finished run's main scores in one line: ``fg F1 0.9981, agnostic PQ 0.9854`` (those it has)."""
    shown = [f"{name} {metrics[key]:.4f}" for name, key in HEADLINE if metrics.get(key) is not None]
    if metrics.get(keys.COLLAPSE + "collapsed"):
        shown.append("collapsed")
    return ", ".join(shown) or "no scores"


def write_metrics(metrics: Mapping[str, float], path: Path) -> None:
    """Write ``metrics`` as strict JSON: a NaN or infinite value is written as ``null``, with a warning
    naming it (JSON has no NaN, and tools reading the file would fail on it)."""
    undefined = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if undefined:
        log.warning("undefined metrics (NaN or infinite), written as null: %s", ", ".join(undefined))
    values = {name: (value if math.isfinite(value) else None) for name, value in sorted(metrics.items())}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(values, indent=2, allow_nan=False) + "\n")
