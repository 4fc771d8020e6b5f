"""Score a checkpoint on the validation set: ``python -m dsc.evaluate ckpt_path=… [rounding=…]``.

Data come from the run's own config: ``data=<option>`` replaces them and ``+data.<key>=<value>``
adjusts them (``+data.val.num_images=50``). The table of pairwise
scores is printed and written to ``metrics.json`` in the Hydra output directory; with
``export=coco`` the scored instances and the ground truth also go to COCO files there
(``dsc.coco_results``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from dsc.checkpoints import load_model
from dsc.coco_results import GROUND_TRUTH_FILE, PREDICTIONS_FILE, CocoResults
from dsc.data.coco import COCOInstances
from dsc.data.datamodule import ClassNamedDataset
from dsc.metrics import keys
from dsc.utils.console import print_config, quiet_console, where_things_went
from dsc.utils.report import format_metrics_table, write_metrics
from dsc.utils.schema import register_schemas

log = logging.getLogger(__name__)
register_schemas()
EXPORTS = ("coco",)


def score_checkpoint(
    ckpt_path: str,
    trainer_config: DictConfig,
    rounding: DictConfig | None = None,
    data: DictConfig | None = None,
    split: str = "val",
    seed: int = 0,
    export_dir: Path | None = None,
) -> dict[str, float]:
    """Validate a checkpoint's model on ``split`` of its data (adjusted by ``data``, see above);
    with ``export_dir``, write the COCO files of the scored instances there."""
    model, run_config = load_model(ckpt_path, rounding=rounding)
    model.score_instances = True
    pl.seed_everything(seed, workers=True)
    data_config = OmegaConf.create(run_config["data"])
    if data:
        data_config = data if "_target_" in data else OmegaConf.merge(data_config, data)
    if split != "val":
        if "split" not in data_config.val:
            raise ValueError(f"split={split}: these data ({data_config.val._target_}) have no splits")
        data_config.val.split = split
    # Only the scored split is built: evaluating on VOC val must not need the SBD training set.
    datamodule = hydra.utils.instantiate(data_config, train=None)
    callbacks = []
    if export_dir is not None:
        dataset = datamodule.val_dataset
        names = dataset.class_names if isinstance(dataset, ClassNamedDataset) else None
        coco = dataset if isinstance(dataset, COCOInstances) else None  # its own image and category ids
        callbacks.append(CocoResults(export_dir, names, coco))
    trainer: pl.Trainer = hydra.utils.instantiate(trainer_config, logger=False, callbacks=callbacks)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if name.startswith(keys.VALIDATION)
    }


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Validate the checkpoint's model; returns the ``val/…`` metrics and writes metrics.json
    (and the COCO files with ``export=coco``)."""
    export = cfg.get("export")
    if export is not None and export not in EXPORTS:
        raise ValueError(f"export={export} is not a format dsc writes: use {', '.join(EXPORTS)} or null")
    output_dir = Path(cfg.paths.output_dir)
    metrics = score_checkpoint(
        cfg.ckpt_path,
        cfg.trainer,
        cfg.get("rounding"),
        cfg.get("data"),
        cfg.split,
        cfg.seed,
        export_dir=output_dir if export == "coco" else None,
    )
    log.info("metrics of %s on %s:\n%s", cfg.ckpt_path, cfg.split, format_metrics_table(metrics))
    write_metrics(metrics, output_dir / "metrics.json")
    coco = export == "coco"
    log.info(
        where_things_went(
            [
                ("metrics", output_dir / "metrics.json"),
                ("COCO results", output_dir / PREDICTIONS_FILE if coco else None),
                ("COCO ground truth", output_dir / GROUND_TRUTH_FILE if coco else None),
            ],
            [f"python -m dsc.predict ckpt_path={cfg.ckpt_path} input=<image or folder> output=<folder>"],
        )
    )
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    quiet_console()
    print_config(cfg, "evaluate")
    evaluate(cfg)


if __name__ == "__main__":
    main()
