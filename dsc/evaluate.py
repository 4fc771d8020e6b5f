"""Score a checkpoint on the validation set: ``python -m dsc.evaluate ckpt_path=… [rounding=…]``.

Data come from the run's own config: ``data=<option>`` replaces them and ``+data.<key>=<value>``
adjusts them (``+data.val.num_images=50``). The table of pairwise
scores is printed and written to ``metrics.json`` in the Hydra output directory; with
``export=coco`` the scored instances and the ground truth also go to COCO files there
(``dsc.outputs.coco``). ``min_score`` and ``min_size`` choose the instances the results file holds
(default: all); mask AP and PQ count every instance unless ``score_thresholded=true``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig

from dsc.cli.console import where_things_went
from dsc.cli.entry_point import entry_point
from dsc.contracts import InvalidInputError
from dsc.data.coco import COCOInstances
from dsc.data.datamodule import class_names_of
from dsc.instances import InstanceThresholds
from dsc.outputs.coco import GROUND_TRUTH_FILE, PREDICTIONS_FILE, CocoResults
from dsc.outputs.files import refuse_writing_onto_inputs
from dsc.outputs.metrics_file import format_metrics_table, write_metrics
from dsc.training.resume import refuse_training_run_directory
from dsc.training.scoring import score_checkpoint

log = logging.getLogger(__name__)
EXPORTS = ("coco",)


def coco_writer(
    output_dir: Path, thresholds: InstanceThresholds, written: list[CocoResults]
) -> Callable[[pl.LightningDataModule], list[pl.Callback]]:
    """``export=coco``'s callback for a data module: COCO files of the scored instances that pass
    ``thresholds``, with a COCO data set's own image and category ids; appended to ``written``."""

    def callbacks(datamodule: pl.LightningDataModule) -> list[pl.Callback]:
        dataset = datamodule.val_dataset
        names = class_names_of(dataset)
        coco = dataset if isinstance(dataset, COCOInstances) else None
        written.append(CocoResults(output_dir, names, coco, thresholds))
        return written[-1:]

    return callbacks


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Validate the checkpoint's model; returns the ``val/…`` metrics and writes metrics.json
    (and the COCO files with ``export=coco``)."""
    export = cfg.get("export")
    if export is not None and export not in EXPORTS:
        raise InvalidInputError(
            f"export={export} is not a format dsc writes: use {', '.join(EXPORTS)} or null"
        )
    thresholds = InstanceThresholds(cfg.min_score, cfg.min_size)
    output_dir = Path(cfg.paths.output_dir)
    refuse_training_run_directory(output_dir, "hydra.run.dir", "dsc.evaluate")
    written_files = [output_dir / name for name in ("metrics.json", PREDICTIONS_FILE, GROUND_TRUTH_FILE)]
    refuse_writing_onto_inputs(written_files, [Path(cfg.ckpt_path)], "hydra.run.dir")
    written: list[CocoResults] = []
    metrics = score_checkpoint(
        cfg.ckpt_path,
        cfg.trainer,
        cfg.get("rounding"),
        cfg.get("data"),
        cfg.split,
        cfg.seed,
        callbacks=coco_writer(output_dir, thresholds, written) if export == "coco" else None,
        trusted_targets=cfg.trusted_targets,
        scored_thresholds=thresholds if cfg.score_thresholded else None,
    )
    if written:
        log.info("COCO results: %s", written[0].dropped.summary())
    log.info("metrics of %s on %s:\n%s", cfg.ckpt_path, cfg.split, format_metrics_table(metrics))
    write_metrics(metrics, output_dir / "metrics.json")
    coco = export == "coco"
    log.info(
        where_things_went(
            [
                ("metrics", output_dir / "metrics.json"),
                ("COCO results", output_dir / PREDICTIONS_FILE if coco else None),
                ("COCO ground truth", output_dir / GROUND_TRUTH_FILE if coco else None),
                ("pictures", output_dir / "images" if (output_dir / "images").is_dir() else None),
                ("log", output_dir / "evaluate.log" if (output_dir / "evaluate.log").is_file() else None),
                ("composed config", output_dir / ".hydra" if (output_dir / ".hydra").is_dir() else None),
            ],
            [f"python -m dsc.predict ckpt_path={cfg.ckpt_path} input=<image or folder> output=<folder>"],
        )
    )
    return metrics


@entry_point("evaluate")
def main(cfg: DictConfig) -> None:
    """``python -m dsc.evaluate``."""
    evaluate(cfg)


if __name__ == "__main__":
    main()
