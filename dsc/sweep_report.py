"""Tabulate a Hydra multirun: ``python -m dsc.sweep_report logs/train/multiruns/<date>``.

Prints a Markdown table with one row per job: its overrides and the chosen entries of its
``metrics.json`` (jobs that wrote none, such as failed ones, show '-').
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

DEFAULT_METRICS = ("val/pairwise_fg_f1", "val/pairwise_f1", "val/loss", "time/fit_seconds")


def _job_order(override_file: Path) -> tuple[int, str]:
    """Hydra numbers job directories 0, 1, …, 10: sort them as numbers."""
    name = override_file.parent.parent.name
    return (int(name) if name.isdigit() else -1, name)


def collect_jobs(sweep_dir: Path) -> list[tuple[str, dict[str, float]]]:
    """(overrides as one string, metrics) for every job directory under ``sweep_dir``, in job order."""
    override_files = sorted(sweep_dir.glob("*/.hydra/overrides.yaml"), key=_job_order)
    if not override_files:
        raise FileNotFoundError(f"{sweep_dir} holds no Hydra job directories (*/.hydra/overrides.yaml)")
    jobs = []
    for override_file in override_files:
        job_dir = override_file.parent.parent
        overrides = " ".join(yaml.safe_load(override_file.read_text()) or [])
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        jobs.append((overrides, metrics))
    return jobs


def format_markdown(
    jobs: list[tuple[str, dict[str, float]]], metrics: tuple[str, ...] = DEFAULT_METRICS
) -> str:
    lines = ["| overrides | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for overrides, values in jobs:
        cells = ("-" if name not in values else f"{values[name]:.4g}" for name in metrics)
        lines.append(f"| `{overrides or '(defaults)'}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory, e.g. logs/train/multiruns/<date>")
    parser.add_argument(
        "--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metrics.json keys"
    )
    args = parser.parse_args(argv)
    print(format_markdown(collect_jobs(args.sweep_dir), tuple(args.metrics.split(","))))


if __name__ == "__main__":
    main()
