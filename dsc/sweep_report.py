"""Tabulate a Hydra multirun: ``python -m dsc.sweep_report logs/train/multiruns/<date> [--plot]``.

Prints the overrides common to all jobs, then a Markdown table with one row per setting: the
overrides that vary and the chosen entries of its ``metrics.json`` (a job that wrote none, a failed
one, shows "failed"; a metric its file lacks, "-"). Jobs that differ only in ``seed`` are one
setting: its row gives each metric as mean ± sample std over the seeds that finished, with their
number (``python -m dsc.train -m model.embed_dim=8,16 seed=0,1,2``). ``--plot`` also draws the first
metric against each swept key, one line per value of the other swept keys, with error bars of one
std, into ``<sweep dir>/sweep.png`` (or the file named; needs matplotlib: ``pip install "dsc[plot]"``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from dsc.metrics import keys
from dsc.metrics.spread import Spread, format_spread, spread

SEED = "seed"
Job = tuple[list[str], dict[str, float]]  # (overrides, metrics)

DEFAULT_METRICS = (keys.MONITOR, keys.PAIRWISE + "f1", keys.LOSS, "time/fit_seconds")


def _job_order(override_file: Path) -> tuple[int, str]:
    """Hydra numbers job directories 0, 1, …, 10: sort them as numbers."""
    name = override_file.parent.parent.name
    return (int(name) if name.isdigit() else -1, name)


def collect_jobs(sweep_dir: Path) -> list[Job]:
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


def common_overrides(jobs: list[Job]) -> list[str]:
    """The overrides every job shares (none for a single job: its row shows them all)."""
    if len(jobs) < 2:
        return []
    shared = set(jobs[0][0]).intersection(*(set(overrides) for overrides, _ in jobs[1:]))
    return [override for override in jobs[0][0] if override in shared]


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def group_by_seed(jobs: list[Job]) -> list[tuple[list[str], list[Job]]]:
    """Settings in first-seen order: (the overrides but ``seed``, the jobs of that setting)."""
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in jobs:
        setting = tuple(override for override in job[0] if _key(override) != SEED)
        groups.setdefault(setting, []).append(job)
    return [(list(setting), members) for setting, members in groups.items()]


def setting_spreads(members: list[Job], metrics: tuple[str, ...]) -> dict[str, Spread | None]:
    """Each metric's spread over the finished jobs, leaving out undefined values (``keys.is_undefined``)."""
    finished = [values for _, values in members if values]
    return {name: spread(keys.defined(name, values.get(name)) for values in finished) for name in metrics}


def _cell(name: str, spreads: dict[str, Spread | None], finished: list[dict[str, float]]) -> str:
    """A cell: mean ± std, ``n/a`` where every job's value is undefined, ``-`` where none has one."""
    if spreads[name] is None and any(name in values for values in finished):
        return keys.UNDEFINED
    return format_spread(spreads[name], 4) if len(finished) > 1 else _single(spreads[name])


def _single(summary: Spread | None) -> str:
    return "-" if summary is None else f"{summary['mean']:.4g}"


def format_markdown(jobs: list[Job], metrics: tuple[str, ...] = DEFAULT_METRICS) -> str:
    """A line with the overrides common to all jobs, then a table: what each setting changed, its
    metrics (mean ± std over its seeds where it has several)."""
    common = common_overrides(jobs)
    groups = group_by_seed(jobs)
    seeded = any(len(members) > 1 for _, members in groups)
    lines = [f"All jobs: `{' '.join(common)}`", ""] if common else []
    seeds_column = ["seeds (finished)"] if seeded else []
    header = ["overrides", *seeds_column, *metrics]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for setting, members in groups:
        varying = " ".join(override for override in setting if override not in common)
        finished = [values for _, values in members if values]
        if not finished:
            cells = ["failed"] * len(metrics)
        else:
            spreads = setting_spreads(members, metrics)
            cells = [_cell(name, spreads, finished) for name in metrics]
        seeds = [f"{len(members)} ({len(finished)})"] if seeded else []
        lines.append(f"| `{varying or '(defaults)'}` | " + " | ".join(seeds + cells) + " |")
    return "\n".join(lines)


def swept_values(jobs: list[Job]) -> dict[str, list[str]]:
    """Each key that takes more than one value across the jobs → its values, in first-seen order."""
    values: dict[str, list[str]] = {}
    for overrides, _ in jobs:
        for override in overrides:
            key, _, value = override.partition("=")
            values.setdefault(key, [])
            if value not in values[key]:
                values[key].append(value)
    return {key: seen for key, seen in values.items() if len(seen) > 1 and key != SEED}


def _as_number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def plot_sweep(jobs: list[Job], metric: str, path: Path) -> Path:
    """One panel per swept key (``seed`` is none): ``metric`` against the key's values, the mean over
    seeds with an error bar of one std, one line per combination of the other swept keys' values;
    failed jobs are left out. Saved as a PNG at ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError('--plot needs matplotlib: pip install "dsc[plot]"') from error
    swept = swept_values(jobs)
    if not swept:
        raise ValueError("the jobs do not differ in any override: nothing to plot against")
    groups = group_by_seed(jobs)
    settings = [dict(o.partition("=")[::2] for o in overrides) for overrides, _ in groups]
    figure, axes = plt.subplots(1, len(swept), figsize=(5 * len(swept), 4), squeeze=False)
    for axis, (key, values) in zip(axes[0], swept.items(), strict=True):
        numeric = all(isinstance(_as_number(v), float) for v in values)
        order = sorted(values, key=_as_number) if numeric else values
        lines: dict[str, dict[str, Spread]] = {}
        for setting, (_, members) in zip(settings, groups, strict=True):
            summary = setting_spreads(members, (metric,))[metric]
            if summary is None or key not in setting:
                continue
            others = " ".join(f"{k}={setting[k]}" for k in swept if k != key and k in setting)
            lines.setdefault(others, {})[setting[key]] = summary
        for label, points in lines.items():
            xs = [v for v in order if v in points]
            positions = [_as_number(v) if numeric else order.index(v) for v in xs]
            means = [points[v]["mean"] for v in xs]
            errors = [points[v]["std"] or 0.0 for v in xs]
            axis.errorbar(positions, means, yerr=errors, marker="o", capsize=3, label=label or None)
        if not numeric:
            axis.set_xticks(range(len(order)), order)
        axis.set_xlabel(key)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if any(lines):
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory, e.g. logs/train/multiruns/<date>")
    parser.add_argument(
        "--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metrics.json keys"
    )
    parser.add_argument(
        "--plot", nargs="?", const="", default=None, metavar="PNG",
        help="also draw the first metric against each swept key (default file: <sweep_dir>/sweep.png)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    jobs = collect_jobs(args.sweep_dir)
    metrics = tuple(args.metrics.split(","))
    print(format_markdown(jobs, metrics))
    if args.plot is not None:
        path = plot_sweep(jobs, metrics[0], Path(args.plot) if args.plot else args.sweep_dir / "sweep.png")
        print(f"\nplot of {metrics[0]}: {path}")


if __name__ == "__main__":
    main()
