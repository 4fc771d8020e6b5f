"""The paper's Table 1, extended: ``python -m dsc.table1 [spectral=…] [joint=…] [semantic=…]``.

One row per method, all scored on the same split (``split=test`` by default: images that no
training, checkpoint selection or tuning saw):

* **spectral-only**: the deep spectral network's KwikCluster partition, class-agnostic instances;
* **joint**: one network with an embedding and a class head (``loss=spectral_joint``);
* **cross-entropy + CC**: the semantic network's connected components of each predicted class (its
  own rounding when that is ``connected_components``, with its ``min_size``);
* **semantic oracle + CC**: the ground-truth class map (void filled from its neighbours) split the
  same way: the best any semantic segmenter can do with connected components.

``methods=arena`` adds the losses the spectral loss is compared with: spectral from sampled pixels,
discriminative + mean-shift, contrastive + KwikCluster (``conf/methods/``); it scores every model
with every rounding of ``roundings`` from one pass of its network (``arena.json``, ``arena.png``),
and with ``arena.embed_dims=[8,16,32,64]`` trains each of ``arena.losses`` at every d.

Columns: pairwise F1 over all and over foreground pairs, mask AP, AP50, PQ and class-agnostic PQ.
The table goes to the console, ``table1.txt`` and ``table1.json`` (``{method: {metric: {"mean",
"std", "n", "values"}}}``, the sample std over seeds and every seed's value in seed order, null
where a method has no such score). Without checkpoints every method's experiment is first trained
(on ``data``, the built-in shapes by default) with ``seeds`` seeds, in this run's directory
(``<role>/seed_<seed>``), all with the same checkpoint rule (``selected_checkpoint``); a rerun reuses
the finished ones. One seed gives every method the same data order and initial weights, so methods
are compared by their paired differences over seeds: a column's best mean is starred when its 95 %
paired t interval against every other method excludes 0. With both ``spectral=`` and ``semantic=``,
the paper's own layout (pairwise accuracy, precision, recall; means over seeds) follows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dsc.cli.console import where_things_went
from dsc.cli.entry_point import CONFIG_DIR, entry_point, run_entry_point
from dsc.cli.tuning import (
    TrialFailed,
    TrialResult,
    best_trial,
    check_search_space,
    overrides_of,
    read_search_space,
    tune,
)
from dsc.contracts import InvalidInputError
from dsc.metrics import keys
from dsc.metrics.paired import TEST, excludes_zero
from dsc.metrics.spread import Spread, format_spread, spread
from dsc.outputs.arena import (
    against_own,
    draw_arena,
    format_between,
    format_paired,
    format_roundings,
    paired_between,
    paired_to_leader,
    rounding_rows,
)
from dsc.outputs.files import write_text
from dsc.outputs.metrics_file import headline, write_metrics
from dsc.training.callbacks import LAST_CHECKPOINT
from dsc.training.checkpoint_record import read_record
from dsc.training.scoring import RoundingScores, score_roundings
from dsc.training.selection import SELECTED_CHECKPOINT

log = logging.getLogger(__name__)

PAPER = {"semantic": (0.859, 0.864, 0.915), "instance": (0.852, 0.848, 0.919)}
SCORES = ("accuracy", "precision", "recall")
# table1.json's metric names → the suffix of a scored run's key (after its method's prefix).
METRICS = {
    "pairwise_f1": "pairwise_f1",
    "pairwise_fg_f1": "pairwise_fg_f1",
    "mask_ap": "mask_ap",
    "mask_ap50": "mask_ap50",
    "pq": "pq",
    "agnostic_pq": "agnostic/pq",
}
# The scores of instances that carry a class (the agnostic ones ignore it).
CLASSED = ("mask_ap", "mask_ap50", "pq")
HEADERS = ("F1", "fg F1", "mask AP", "AP50", "PQ", "agn. PQ")
# Each role's row; a role of conf/methods/ without one is shown by its name.
LABELS = {
    "spectral": "spectral-only",
    "spectral_sampled": "spectral, sampled",
    "discriminative": "discriminative + mean-shift",
    "contrastive": "contrastive + KwikCluster",
    "joint": "joint",
    "semantic": "cross-entropy + CC",
}
ORACLE = "semantic oracle + CC"
SEARCH_SPACES = CONFIG_DIR / "search_space"  # <experiment>.yaml: what tune.trials=N searches
CONNECTED_COMPONENTS = OmegaConf.create({"_target_": "dsc.rounding.ConnectedComponents"})


def _cells(values: tuple[float, ...] | None) -> list[str]:
    return [f"{v:.3f}" if values else "-" for v in (values or (None,) * 3)]


def format_table1(semantic: dict[str, float], spectral: dict[str, float]) -> str:
    """The paper's Table 1 layout (pairwise accuracy, precision, recall) and the foreground-pair table."""

    def triple(metrics: dict[str, float], prefix: str) -> tuple[float, ...]:
        return tuple(metrics[f"{prefix}{score}"] for score in SCORES)

    rows = [
        ("FCN-8 (paper)", PAPER["semantic"], None),
        ("FCN-8 (dsc)", triple(semantic, keys.CLASS_PARTITION), None),
        ("Deep Spectral (paper)", None, PAPER["instance"]),
        ("Deep Spectral (dsc)", None, triple(spectral, keys.PAIRWISE)),
    ]
    width = 24
    header = "".ljust(width) + "Semantic".center(30) + "Instance".center(30)
    names = "".ljust(width) + "".join(name.capitalize().rjust(10) for name in SCORES * 2)
    lines = ["Table 1: pairwise scores over all pixel pairs", header, names]
    lines += [name.ljust(width) + "".join(c.rjust(10) for c in _cells(a) + _cells(b)) for name, a, b in rows]
    lines += ["", "Over foreground pairs of the instance ground truth (where instances are told apart)"]
    lines.append("".ljust(width) + "".join(name.capitalize().rjust(10) for name in SCORES))
    for name, metrics, prefix in (
        ("FCN-8 (dsc)", semantic, keys.PAIRWISE + keys.FG),
        ("Deep Spectral (dsc)", spectral, keys.PAIRWISE + keys.FG),
        ("GT semantic partition", spectral, keys.SEMANTIC_ORACLE + keys.FG),
    ):
        lines.append(name.ljust(width) + "".join(c.rjust(10) for c in _cells(triple(metrics, prefix))))
    return "\n".join(lines)


def method_rows(scored: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Spread | None]]:
    """The extended table's rows from scored runs (``dsc.evaluate`` metrics of each seed, by role);
    the oracle row comes from the first role's runs (it depends on the data alone). Undefined values
    (``keys.is_undefined``: mask AP without true instances) are left out, never averaged."""

    def row(runs: list[dict[str, float]], prefix: str) -> dict[str, Spread | None]:
        return {
            name: spread(keys.defined(prefix + key, run.get(prefix + key)) for run in runs)
            for name, key in METRICS.items()
        }

    rows = {label_of(role): row(runs, keys.INSTANCES) for role, runs in scored.items()}
    if scored:
        rows[ORACLE] = row(next(iter(scored.values())), keys.ORACLE_CC)
    return rows


def clear_winners(rows: dict[str, dict[str, Spread | None]]) -> dict[str, str]:
    """Metric → the method with the best mean whose paired difference from every other method
    (``dsc.metrics.paired``: the same seeds, a 95 % t interval) excludes 0."""
    winners = {}
    for metric in METRICS:
        leader, differences = paired_to_leader(rows, metric)
        if leader is not None and differences and all(map(excludes_zero, differences.values())):
            winners[metric] = leader
    return winners


def format_extended(rows: dict[str, dict[str, Spread | None]], split: str = "test") -> str:
    width = max(len(method) for method in rows) + 2
    winners = clear_winners(rows)
    seeds = max((summary["n"] for row in rows.values() for summary in row.values() if summary), default=1)
    cell_width = 16 if seeds > 1 else 9

    def cell(method: str, metric: str, summary: Spread | None) -> str:
        if summary is None:
            return "- "
        return format_spread(summary) + ("*" if winners.get(metric) == method else " ")

    over = f", mean ± std over {seeds} seeds" if seeds > 1 else ""
    lines = [
        f"Instances on the {split} split: pairwise F1, mask AP and panoptic quality{over}",
        "".ljust(width) + "".join(header.rjust(cell_width) + " " for header in HEADERS),
    ]
    for method, values in rows.items():
        cells = (cell(method, metric, summary) for metric, summary in values.items())
        lines.append(method.ljust(width) + "".join(c.rjust(cell_width + 1) for c in cells))
    if winners:
        lines.append(f"* the best mean, ahead of every other method by a {TEST} that excludes 0")
    return "\n".join(lines)


def mean_metrics(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over runs (the keys every run has)."""
    shared = set.intersection(*(set(run) for run in runs))
    return {key: statistics.fmean(run[key] for run in runs) for key in shared}


def components_rounding(checkpoint_path: str) -> DictConfig | None:
    """The semantic model's rounding for the table: its own when that is connected components (with
    its own ``min_size``), connected components otherwise."""
    rounding = read_record(checkpoint_path).config["rounding"]
    return None if rounding["_target_"] == CONNECTED_COMPONENTS._target_ else CONNECTED_COMPONENTS


def scored_split(split: str, checkpoints: dict[str, list[str]]) -> str:
    """``split``, except ``test`` for data without a test split (VOC, COCO and Cityscapes keep their
    test labels private): then ``val``, with a warning, and the table says so in its title."""
    if split != "test":
        return split
    for paths in checkpoints.values():
        data = read_record(paths[0]).config["data"]
        if data.get("test") is None:
            log.warning(
                "split=test: the data of %s have no test split (data.test); every model is scored on "
                "val, the split its checkpoint may have been selected on",
                paths[0],
            )
            return "val"
    return split


def seeds_of(cfg: DictConfig) -> list[int]:
    if cfg.seeds < 1:
        raise InvalidInputError(f"seeds={cfg.seeds}: train each method at least once (seeds >= 1)")
    return [cfg.seed + offset for offset in range(cfg.seeds)]


def data_choice() -> list[str]:
    """``[data=<option>]`` where the command chose data for every method, else []."""
    choice = HydraConfig.get().runtime.choices.get("data")
    return [] if choice in (None, "null") else [f"data={choice}"]


def trainings(cfg: DictConfig) -> list[tuple[str, str, list[str]]]:
    """(role, experiment, overrides) of every method to train: each of ``experiments``, and with
    ``arena.embed_dims`` each of ``arena.losses`` once per d instead (role ``<role>_d<d>``)."""
    dims = list(cfg.arena.embed_dims or [])
    varied = set(cfg.arena.losses) if dims else set()
    unknown = sorted(varied - set(cfg.experiments))
    if unknown:
        raise InvalidInputError(
            f"arena.losses names {', '.join(unknown)}, which experiments lacks: choose among "
            f"{', '.join(cfg.experiments)}"
        )
    if any(not isinstance(d, int) or d < 1 for d in dims):
        raise InvalidInputError(f"arena.embed_dims={dims}: give whole numbers ≥ 1, such as [8,16,32,64]")
    data = data_choice()
    runs = []
    for role, experiment in cfg.experiments.items():
        if role in varied:
            runs += [(f"{role}_d{d}", experiment, [*data, f"model.embed_dim={d}"]) for d in dims]
        else:
            runs.append((role, experiment, data))
    return runs


def method_of(role: str) -> tuple[str, int | None]:
    """A role's method and d: ``spectral_d32`` → (``spectral``, 32) (``arena.embed_dims``);
    ``spectral`` → (``spectral``, None)."""
    base, _, d = role.rpartition("_d")
    return (base, int(d)) if base and d.isdigit() else (role, None)


def label_of(role: str) -> str:
    """A role's row name: ``spectral-only``, ``spectral-only, d=32``."""
    method, d = method_of(role)
    label = LABELS.get(method, method)
    return label if d is None else f"{label}, d={d}"


def _train(cfg: DictConfig, run_dir: Path, arguments: list[str], stage: str, durations: list[float]) -> dict:
    """One ``python -m dsc.train`` run in ``run_dir`` (kept when it finished before, resumed when it
    was interrupted); its final metrics. ``durations``: the runs' seconds so far (for estimates)."""
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        log.info("%s is trained already: %s", stage, run_dir)
        return json.loads(metrics_file.read_text())
    resume = ["ckpt_path=last"] if (run_dir / "checkpoints" / LAST_CHECKPOINT).is_file() else []
    estimate = f", about {_duration(statistics.fmean(durations))} as the ones before" if durations else ""
    arguments = [
        f"selected_checkpoint={cfg.selected_checkpoint}",
        *arguments,
        *resume,
        f"hydra.run.dir={run_dir}",
    ]
    durations.append(
        run_entry_point("dsc.train", arguments, f"{stage}: training{estimate}", run_dir / "train.log", True)
    )
    scores = json.loads(metrics_file.read_text())
    log.info("%s trained in %.0f s: %s", stage, durations[-1], headline(scores))
    return scores


def tune_methods(cfg: DictConfig, output: Path, durations: list[float]) -> dict[str, list[TrialResult]]:
    """``tune.trials`` trials of TPE for every method (``dsc.cli.tuning``), on val with seed
    ``seed``, in ``tuning/<role>/trial_<n>``; every search space is read and checked against its
    recipe before any training. role → its trials."""
    if cfg.tune.trials < 0 or cfg.tune.startup_trials < 0:
        raise InvalidInputError(
            f"tune.trials={cfg.tune.trials}, tune.startup_trials={cfg.tune.startup_trials}: give counts ≥ 0 "
            "(tune.trials=0 trains the recipes as they are)"
        )
    if cfg.tune.trials == 0:
        return {}
    data = data_choice()
    spaces = {}
    for role, experiment in cfg.experiments.items():
        path = SEARCH_SPACES / f"{experiment}.yaml"
        spaces[role] = read_search_space(path)
        recipe = hydra.compose("train", overrides=[f"experiment={experiment}", *data])
        check_search_space(spaces[role], recipe, f"search space {path}")
    tuned = {}
    for role, experiment in cfg.experiments.items():

        def run_trial(number: int, params: dict, role: str = role, experiment: str = experiment) -> float:
            run_dir = output / "tuning" / role / f"trial_{number:03d}"
            stage = f"tuning {role}, trial {number + 1}/{cfg.tune.trials}"
            arguments = [f"experiment={experiment}", f"seed={cfg.seed}", *data, *overrides_of(params)]
            try:
                metrics = _train(
                    cfg, run_dir, [*arguments, *cfg.recipe_overrides, *cfg.train_overrides], stage, durations
                )
            except RuntimeError as error:  # the training failed: a failed trial, never the arena's end
                raise TrialFailed(str(error).splitlines()[0]) from error
            if cfg.tune.metric not in metrics:
                raise TrialFailed(f"its metrics.json has no {cfg.tune.metric}")
            return metrics[cfg.tune.metric]

        tuned[role] = tune(
            spaces[role],
            run_trial,
            cfg.tune.trials,
            output / "tuning" / role,
            cfg.seed,
            cfg.tune.startup_trials,
        )
        best = best_trial(tuned[role])
        log.info(
            "tuned %s: %s", role,
            f"{cfg.tune.metric} {best.value:.4f} with {' '.join(overrides_of(best.params))}" if best
            else "every trial failed; its recipe's own configuration is trained",
        )  # fmt: skip
    return tuned


def train_on_shapes(
    cfg: DictConfig, output: Path, tuned: dict[str, list[TrialResult]], durations: list[float]
) -> dict[str, list[str]]:
    """Train every method's experiment (``trainings``), with its best tuned configuration where it
    was tuned, once per seed with ``python -m dsc.train`` (one process each, as a user runs it) and
    return their selected checkpoints by role. Run again in the same directory, it keeps the models
    already trained (those with a ``metrics.json``) and resumes an interrupted one."""
    checkpoints: dict[str, list[str]] = {}
    runs = [
        (role, experiment, extra, seed)
        for role, experiment, extra in trainings(cfg)
        for seed in seeds_of(cfg)
    ]
    for number, (role, experiment, extra, seed) in enumerate(runs, start=1):
        best = best_trial(tuned.get(method_of(role)[0], []))
        params = overrides_of(best.params) if best else []
        run_dir = output / role / ("tuned" if tuned else "") / f"seed_{seed}"
        checkpoints.setdefault(role, []).append(str(run_dir / "checkpoints" / SELECTED_CHECKPOINT))
        stage = f"[{number}/{len(runs)}] the {role} model (seed {seed})"
        arguments = [
            f"experiment={experiment}",
            f"seed={seed}",
            *params,
            *extra,
            *cfg.recipe_overrides,
            *cfg.train_overrides,
        ]
        _train(cfg, run_dir, arguments, stage, durations)
    return checkpoints


def format_tuning(tuned: dict[str, list[TrialResult]], cfg: DictConfig) -> str:
    """Each method's best trial and its configuration; failed trials named below."""
    if not tuned:
        return ""
    lines = [
        f"Tuning: {cfg.tune.trials} trials of Optuna's TPE per method on val (seed {cfg.seed}, "
        f"{cfg.tune.metric}); each method's best, retrained over the seeds above"
    ]
    failures = []
    for role, results in tuned.items():
        best = best_trial(results)
        found = (
            f"{best.value:.4f} (trial {best.number}): {' '.join(overrides_of(best.params))}" if best else "-"
        )
        lines.append(f"  {label_of(role)}: {found}")
        failures += [f"{label_of(role)} trial {r.number}: {r.failure}" for r in results if r.failure]
    lines += [f"failed: {failure}" for failure in failures]
    return "\n".join(lines)


@entry_point("table1")
def main(cfg: DictConfig) -> str:
    """``python -m dsc.table1``: the table, as printed."""
    output = Path(cfg.paths.output_dir)
    given = {role: [cfg[role]] for role in ("spectral", "joint", "semantic") if cfg.get(role)}
    roundings = {name: hydra.utils.instantiate(config) for name, config in (cfg.roundings or {}).items()}
    durations: list[float] = []
    tuned = {} if given else tune_methods(cfg, output, durations)
    checkpoints = given or train_on_shapes(cfg, output, tuned, durations)
    seeds = [cfg.seed] if given else seeds_of(cfg)
    split = scored_split(cfg.split, checkpoints)

    def score_all(role: str, rounding: DictConfig | None) -> list[RoundingScores]:
        return [
            score_roundings(
                path, cfg.trainer, roundings, rounding=rounding, split=split, seed=seed,
                trusted_targets=cfg.trusted_targets,
            )
            for path, seed in zip(checkpoints[role], seeds, strict=True)
        ]  # fmt: skip

    components = components_rounding(checkpoints["semantic"][0]) if "semantic" in checkpoints else None
    # The semantic baseline's row comes after every embedding model's.
    results = {role: score_all(role, cfg.get("rounding")) for role in checkpoints if role != "semantic"}
    if "semantic" in checkpoints:
        results["semantic"] = score_all("semantic", components)
    scored = {role: [run.metrics for run in runs] for role, runs in results.items()}
    rows = method_rows(scored)
    table = format_extended(rows, split)
    paired = format_paired(rows, dict(zip(METRICS, HEADERS, strict=True)))
    if paired:
        table += "\n\n" + paired
    # Whether the joint recipe's class head earns its place: its classed scores against the
    # semantic model's, seed by seed.
    classed = {metric: header for metric, header in zip(METRICS, HEADERS, strict=True) if metric in CLASSED}
    learned_classes = {}
    if {"joint", "semantic"} <= set(checkpoints):
        joint, semantic = label_of("joint"), label_of("semantic")
        learned_classes = paired_between(rows, joint, semantic, classed)
        between = format_between(learned_classes, joint, semantic, classed)
        if between:
            table += "\n\n" + between
    by_rounding = rounding_rows({label_of(role): runs for role, runs in results.items()}, list(roundings))
    if roundings:
        table += "\n\n" + format_roundings(by_rounding, split)
    if "spectral" in checkpoints and "semantic" in checkpoints:
        # The paper's "semantic" row: the semantic model's class partition, whatever its rounding.
        semantic = scored["semantic"]
        if components is not None:
            semantic = [run.metrics for run in score_all("semantic", None)]
        table += "\n\n" + format_table1(mean_metrics(semantic), mean_metrics(scored["spectral"]))
    if tuned:
        table += "\n\n" + format_tuning(tuned, cfg)
    scoring_seconds = sum(run.seconds for runs in results.values() for run in runs)
    times = _times(output, results, scoring_seconds, given)
    table += "\n\n" + times
    print(table, flush=True)
    write_text(output / "table1.txt", table + "\n")
    write_text(output / "table1.json", json.dumps(rows, indent=2, allow_nan=False) + "\n")
    places = [("table", output / "table1.txt"), ("rows as JSON", output / "table1.json")]
    if roundings:
        arena = {
            "split": split,
            "seeds": seeds,
            "test": TEST,
            "roundings": by_rounding,
            "against_own_rounding": against_own(by_rounding),
            "paired_to_leader": {
                metric: dict(zip(("leader", "differences"), paired_to_leader(rows, metric), strict=True))
                for metric in METRICS
            },
            "joint_against_semantic": learned_classes,
            "scoring_seconds": scoring_seconds,
            "tuning": {
                role: [dataclasses.asdict(result) for result in results] for role, results in tuned.items()
            },
        }
        write_text(output / "arena.json", json.dumps(arena, indent=2, allow_nan=False) + "\n")
        places.append(("arena as JSON", output / "arena.json"))
        if draw_arena(by_rounding, _by_dimension(rows, list(checkpoints)), output / "arena.png", split):
            places.append(("arena picture", output / "arena.png"))
    write_metrics(
        {
            f"{role}/{name}" if len(runs) == 1 else f"{role}/seed_{seed}/{name}": value
            for role, runs in scored.items()
            for seed, metrics in zip(seeds, runs, strict=True)
            for name, value in metrics.items()
        },
        output / "metrics.json",
    )
    places += [("metrics", output / "metrics.json")]
    places += [(f"{role} checkpoints", ", ".join(paths)) for role, paths in checkpoints.items()]
    log.info(where_things_went(places, []))
    return table


def _by_dimension(
    rows: dict[str, dict[str, Spread | None]], roles: list[str]
) -> dict[str, dict[int, Spread | None]]:
    """loss → d → agnostic PQ, from the roles of ``arena.embed_dims`` (``<role>_d<d>``)."""
    found: dict[str, dict[int, Spread | None]] = {}
    for role in roles:
        method, d = method_of(role)
        if d is not None:
            found.setdefault(label_of(method), {})[d] = rows[label_of(role)]["agnostic_pq"]
    return found


def _times(output: Path, results: dict[str, list[RoundingScores]], scoring: float, given: dict) -> str:
    """Training's and scoring's times apart: the fit times of every training in this run's directory
    (tuning trials included; their metrics.json) and the scoring's, with each compared rounding's."""
    fits = []
    if not given:
        for metrics_file in sorted(output.glob("**/metrics.json")):
            if metrics_file.parent != output:
                fits.append(json.loads(metrics_file.read_text()).get("time/fit_seconds", 0.0))
    rounding: dict[str, float] = {}
    for runs in results.values():
        for run in runs:
            for name, seconds in run.rounding_seconds.items():
                rounding[name] = rounding.get(name, 0.0) + seconds
    line = f"Time: scoring {_duration(scoring)}"
    if fits:
        line = f"Time: training {_duration(sum(fits))} ({len(fits)} runs' fits), scoring {_duration(scoring)}"
    if rounding:
        line += " (of which rounding: " + ", ".join(f"{n} {_duration(t)}" for n, t in rounding.items()) + ")"
    return line


def _duration(seconds: float) -> str:
    """``40 s``, ``3 min``: a time estimate as people say it."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


if __name__ == "__main__":
    main()
