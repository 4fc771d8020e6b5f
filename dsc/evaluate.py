"""Score a checkpoint on the validation set: ``python -m dsc.evaluate ckpt_path=… [rounding=…]``.

Data come from the run's own config: ``data=<option>`` replaces them and ``+data.<key>=<value>``
adjusts them (``+data.val.num_images=50``). The table of pairwise
scores is printed and written to ``metrics.json`` in the Hydra output directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from dsc.checkpoints import load_model
from dsc.utils.report import format_metrics_table, write_metrics
from dsc.utils.schema import register_schemas

log = logging.getLogger(__name__)
register_schemas()


def score_checkpoint(
    ckpt_path: str,
    trainer_config: DictConfig,
    rounding: DictConfig | None = None,
    data: DictConfig | None = None,
    split: str = "val",
    seed: int = 0,
) -> dict[str, float]:
    """Validate a checkpoint's model on ``split`` of its data (adjusted by ``data``, see above)."""
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
    trainer: pl.Trainer = hydra.utils.instantiate(trainer_config, logger=False, callbacks=None)
    # Only the scored split is built: evaluating on VOC val must not need the SBD training set.
    datamodule = hydra.utils.instantiate(data_config, train=None)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    return {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")}


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Validate the checkpoint's model; returns the ``val/…`` metrics and writes metrics.json."""
    metrics = score_checkpoint(
        cfg.ckpt_path, cfg.trainer, cfg.get("rounding"), cfg.get("data"), cfg.split, cfg.seed
    )
    log.info("metrics of %s on %s:\n%s", cfg.ckpt_path, cfg.split, format_metrics_table(metrics))
    write_metrics(metrics, Path(cfg.paths.output_dir) / "metrics.json")
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    log.info("evaluate config:\n%s", OmegaConf.to_yaml(cfg))
    evaluate(cfg)


if __name__ == "__main__":
    main()
