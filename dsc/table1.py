"""The paper's Table 1 from two checkpoints:
``python -m dsc.table1 spectral=SPECTRAL.ckpt semantic=SEMANTIC.ckpt [split=val]``.

Scores the semantic FCN-8s against the class partition ("Semantic" columns) and the deep spectral
network's rounded instances against the instance partition ("Instance" columns), with the paper's
numbers beside ours; then both, and the ground-truth semantic partition, over foreground instance
pairs, where a semantic partition's merged instances show.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dsc.evaluate import score_checkpoint
from dsc.utils.report import write_metrics
from dsc.utils.schema import register_schemas

log = logging.getLogger(__name__)
register_schemas()

PAPER = {"semantic": (0.859, 0.864, 0.915), "instance": (0.852, 0.848, 0.919)}
SCORES = ("accuracy", "precision", "recall")


def _cells(values: tuple[float, ...] | None) -> list[str]:
    return [f"{v:.3f}" if values else "-" for v in (values or (None,) * 3)]


def format_table1(semantic: dict[str, float], spectral: dict[str, float]) -> str:
    """Table 1's layout (pairwise accuracy, precision, recall) and the foreground-pair table."""

    def triple(metrics: dict[str, float], prefix: str) -> tuple[float, ...]:
        return tuple(metrics[f"{prefix}{score}"] for score in SCORES)

    rows = [
        ("FCN-8 (paper)", PAPER["semantic"], None),
        ("FCN-8 (dsc)", triple(semantic, "val/class_partition/pairwise_"), None),
        ("Deep Spectral (paper)", None, PAPER["instance"]),
        ("Deep Spectral (dsc)", None, triple(spectral, "val/pairwise_")),
    ]
    width = 24
    header = "".ljust(width) + "Semantic".center(30) + "Instance".center(30)
    names = "".ljust(width) + "".join(name.capitalize().rjust(10) for name in SCORES * 2)
    lines = ["Table 1: pairwise scores over all pixel pairs", header, names]
    lines += [name.ljust(width) + "".join(c.rjust(10) for c in _cells(a) + _cells(b)) for name, a, b in rows]
    lines += ["", "Over foreground pairs of the instance ground truth (where instances are told apart)"]
    lines.append("".ljust(width) + "".join(name.capitalize().rjust(10) for name in SCORES))
    for name, metrics, prefix in (
        ("FCN-8 (dsc)", semantic, "val/pairwise_fg_"),
        ("Deep Spectral (dsc)", spectral, "val/pairwise_fg_"),
        ("GT semantic partition", spectral, "val/semantic_oracle/pairwise_fg_"),
    ):
        lines.append(name.ljust(width) + "".join(c.rjust(10) for c in _cells(triple(metrics, prefix))))
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="conf", config_name="table1")
def main(cfg: DictConfig) -> str:
    semantic = score_checkpoint(cfg.semantic, cfg.trainer, split=cfg.split, seed=cfg.seed)
    spectral = score_checkpoint(
        cfg.spectral, cfg.trainer, cfg.get("rounding"), split=cfg.split, seed=cfg.seed
    )
    table = format_table1(semantic, spectral)
    print(table, flush=True)
    output = Path(cfg.paths.output_dir)
    (output / "table1.txt").write_text(table + "\n")
    write_metrics(
        {f"semantic/{k}": v for k, v in semantic.items()} | {f"spectral/{k}": v for k, v in spectral.items()},
        output / "metrics.json",
    )
    return table


if __name__ == "__main__":
    main()
