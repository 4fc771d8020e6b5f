"""Tabulate a Hydra multirun: ``python -m dsc.sweep_report logs/train/multiruns/<date>``.

Prints the overrides common to all jobs, then a Markdown table with one row per job: the overrides
that vary and the chosen entries of its ``metrics.json`` (jobs that wrote none, such as failed
ones, show '-').
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


def collect_jobs(sweep_dir: Path) -> list[tuple[list[str], dict[str, float]]]:
    """(overrides, metrics) of every job directory under ``sweep_dir``, in job order."""
    override_files = sorted(sweep_dir.glob("*/.hydra/overrides.yaml"), key=_job_order)
    if not override_files:
        raise FileNotFoundError(f"{sweep_dir} holds no Hydra job directories (*/.hydra/overrides.yaml)")
    jobs = []
    for override_file in override_files:
        metrics_file = override_file.parent.parent / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        jobs.append((list(yaml.safe_load(override_file.read_text()) or []), metrics))
    return jobs


def common_overrides(jobs: list[tuple[list[str], dict[str, float]]]) -> list[str]:
    """The overrides every job shares (none for a single job: its row shows them all)."""
    if len(jobs) < 2:
        return []
    shared = set(jobs[0][0]).intersection(*(set(overrides) for overrides, _ in jobs[1:]))
    return [override for override in jobs[0][0] if override in shared]


def format_markdown(
    jobs: list[tuple[list[str], dict[str, float]]], metrics: tuple[str, ...] = DEFAULT_METRICS
) -> str:
    """A line with the overrides common to all jobs, then a table: what each job changed, its metrics."""
    common = common_overrides(jobs)
    lines = [f"All jobs: `{' '.join(common)}`", ""] if common else []
    lines += ["| overrides | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for overrides, values in jobs:
        varying = " ".join(override for override in overrides if override not in common)
        cells = ("-" if name not in values else f"{values[name]:.4g}" for name in metrics)
        lines.append(f"| `{varying or '(defaults)'}` | " + " | ".join(cells) + " |")
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
