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


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Validate the checkpoint's model; returns the ``val/…`` metrics."""
    model, run_config = load_model(cfg.ckpt_path, rounding=cfg.get("rounding"))
    pl.seed_everything(cfg.seed, workers=True)
    # data=<option> replaces the run's data; data.<key>=<value> adjusts it.
    data_config = OmegaConf.create(run_config["data"])
    if cfg.get("data"):
        data_config = cfg.data if "_target_" in cfg.data else OmegaConf.merge(data_config, cfg.data)
    datamodule = hydra.utils.instantiate(data_config)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=None)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = {
        name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")
    }
    if trainer.is_global_zero:
        log.info("metrics of %s:\n%s", cfg.ckpt_path, format_metrics_table(metrics))
        write_metrics(metrics, Path(cfg.paths.output_dir) / "metrics.json")
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    log.info("evaluate config:\n%s", OmegaConf.to_yaml(cfg))
    evaluate(cfg)


if __name__ == "__main__":
    main()
