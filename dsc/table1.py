"""The paper's Table 1, extended: ``python -m dsc.table1 [spectral=…] [joint=…] [semantic=…]``.

One row per method, all scored on the same split:

* **spectral-only**: the deep spectral network's KwikCluster partition, class-agnostic instances;
* **joint**: one network with an embedding and a class head (``loss=spectral_joint``);
* **cross-entropy + CC**: the semantic network's connected components of each predicted class (its
  own rounding when that is ``connected_components``, with its ``min_size``);
* **semantic oracle + CC**: the ground-truth class map (void filled from its neighbours) split the
  same way: the best any semantic segmenter can do with connected components.

Columns: pairwise F1 over all and over foreground pairs, mask AP, AP50, PQ and class-agnostic PQ.
The table goes to the console, ``table1.txt`` and ``table1.json`` (``{method: {metric: value}}``,
null where a method has no such score). Without checkpoints the three models are first trained on
the built-in shapes data (``experiment=shapes_exact``, ``shapes_joint``, ``shapes_semantic``) in
this run's directory. With both ``spectral=`` and ``semantic=``, the paper's own layout (pairwise
accuracy, precision, recall) follows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dsc.cli.console import where_things_went
from dsc.cli.entry_point import entry_point, run_entry_point
from dsc.metrics import keys
from dsc.outputs.files import write_text
from dsc.outputs.metrics_file import write_metrics
from dsc.training.checkpoint_record import read_record
from dsc.training.scoring import score_checkpoint

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
HEADERS = ("F1", "fg F1", "mask AP", "AP50", "PQ", "agn. PQ")
METHODS = {
    "spectral-only": "spectral",
    "joint": "joint",
    "cross-entropy + CC": "semantic",
    "semantic oracle + CC": "oracle",
}
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


def method_rows(scored: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    """The extended table's rows from scored runs (``dsc.evaluate`` metrics by role: ``spectral``,
    ``joint``, ``semantic``); the oracle row comes from whichever run was scored (data only)."""
    rows: dict[str, dict[str, float | None]] = {}
    for method, role in METHODS.items():
        if role == "oracle":
            if not scored:
                continue
            metrics, prefix = next(iter(scored.values())), keys.ORACLE_CC
        elif role in scored:
            metrics, prefix = scored[role], keys.INSTANCES
        else:
            continue
        rows[method] = {name: metrics.get(prefix + key) for name, key in METRICS.items()}
    return rows


def format_extended(rows: dict[str, dict[str, float | None]]) -> str:
    width = max(len(method) for method in rows) + 2
    lines = [
        "Instances: pairwise F1, mask AP and panoptic quality",
        "".ljust(width) + "".join(header.rjust(9) for header in HEADERS),
    ]
    for method, values in rows.items():
        cells = ("-" if v is None else f"{v:.3f}" for v in values.values())
        lines.append(method.ljust(width) + "".join(cell.rjust(9) for cell in cells))
    return "\n".join(lines)


def components_rounding(checkpoint_path: str) -> DictConfig | None:
    """The semantic model's rounding for the table: its own when that is connected components (with
    its own ``min_size``), connected components otherwise."""
    rounding = read_record(checkpoint_path).config["rounding"]
    return None if rounding["_target_"] == CONNECTED_COMPONENTS._target_ else CONNECTED_COMPONENTS


def train_on_shapes(cfg: DictConfig, output: Path) -> dict[str, str]:
    """Train the three models with ``python -m dsc.train`` (one process each, as a user runs it) and
    return their last checkpoints by role. Run again in the same directory, it keeps the models
    already trained (those with a ``metrics.json``) and resumes an interrupted one."""
    checkpoints = {}
    for role, experiment in cfg.experiments.items():
        run_dir = output / role
        checkpoints[role] = str(run_dir / "checkpoints" / "last.ckpt")
        if (run_dir / "metrics.json").is_file():
            log.info("the %s model is trained already: %s", role, checkpoints[role])
            continue
        resume = ["ckpt_path=last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
        arguments = [
            f"experiment={experiment}", f"seed={cfg.seed}", *cfg.train_overrides, *resume,
            f"hydra.run.dir={run_dir}",
        ]  # fmt: skip
        run_entry_point("dsc.train", arguments, f"training the {role} model", run_dir / "train.log")
    return checkpoints


@entry_point("table1")
def main(cfg: DictConfig) -> str:
    """``python -m dsc.table1``: the table, as printed."""
    output = Path(cfg.paths.output_dir)
    checkpoints = {role: cfg[role] for role in ("spectral", "joint", "semantic") if cfg.get(role)}
    if not checkpoints:
        checkpoints = train_on_shapes(cfg, output)

    def score(role: str, rounding: DictConfig | None) -> dict[str, float]:
        return score_checkpoint(
            checkpoints[role], cfg.trainer, rounding, split=cfg.split, seed=cfg.seed,
            trusted_targets=cfg.trusted_targets,
        )  # fmt: skip

    scored = {role: score(role, cfg.get("rounding")) for role in ("spectral", "joint") if role in checkpoints}
    if "semantic" in checkpoints:
        components = components_rounding(checkpoints["semantic"])
        scored["semantic"] = score("semantic", components)
    rows = method_rows(scored)
    table = format_extended(rows)
    if "spectral" in checkpoints and "semantic" in checkpoints:
        # The paper's "semantic" row: the semantic model's class partition, whatever its rounding.
        semantic = scored["semantic"] if components is None else score("semantic", None)
        table += "\n\n" + format_table1(semantic, scored["spectral"])
    print(table, flush=True)
    write_text(output / "table1.txt", table + "\n")
    write_text(output / "table1.json", json.dumps(rows, indent=2, allow_nan=False) + "\n")
    write_metrics(
        {f"{role}/{name}": value for role, metrics in scored.items() for name, value in metrics.items()},
        output / "metrics.json",
    )
    places = [("table", output / "table1.txt"), ("rows as JSON", output / "table1.json")]
    places += [("metrics", output / "metrics.json")]
    places += [(f"{role} checkpoint", path) for role, path in checkpoints.items()]
    log.info(where_things_went(places, []))
    return table


if __name__ == "__main__":
    main()
