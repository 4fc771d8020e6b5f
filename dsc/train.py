"""Train an embedding network with the spectral loss: ``python -m dsc.train [overrides]``.

Compose the config, build data, model and trainer, fit, score the best checkpoint on the
validation set, print the table and write ``metrics.json`` into the run's output directory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from dsc.checkpoints import resume_path, wandb_run_id
from dsc.module import DeepSpectralClustering
from dsc.utils.distributed import ddp_job, use_job_directories_for_ddp
from dsc.utils.loggers import keep_csv_history
from dsc.utils.report import format_metrics_table, write_metrics
from dsc.utils.schema import register_schemas
from dsc.utils.task import instantiate_all, task_wrapper

log = logging.getLogger(__name__)
register_schemas()
use_job_directories_for_ddp()


@task_wrapper
def train(cfg: DictConfig) -> tuple[float | None, dict[str, float]]:
    """Run one training job; returns (the value of ``cfg.optimized_metric``, all final metrics)."""
    with ddp_job():
        return _train(cfg)


def _train(cfg: DictConfig) -> tuple[float | None, dict[str, float]]:
    pl.seed_everything(cfg.seed, workers=True)

    model = DeepSpectralClustering.from_config(cfg)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)

    ckpt_path = resume_path(cfg.get("ckpt_path"), Path(cfg.paths.output_dir) / "checkpoints")
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=instantiate_all(cfg.get("callbacks")),
        logger=instantiate_all(cfg.get("logger"), resumed_wandb_id=wandb_run_id(ckpt_path)),
    )
    if ckpt_path is not None and trainer.is_global_zero:
        keep_csv_history(trainer.loggers)
    for logger in trainer.loggers:
        logger.log_hyperparams(model.run_config)

    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - started

    # Score the best checkpoint; fast_dev_run and runs without checkpoints keep the last weights.
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.validate(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics = {
        name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")
    }
    metrics["time/fit_seconds"] = fit_seconds

    if trainer.is_global_zero:
        log.info("final validation metrics (%s):\n%s", best or "last weights", format_metrics_table(metrics))
        write_metrics(metrics, Path(cfg.paths.output_dir) / "metrics.json")
    return metrics.get(cfg.optimized_metric), metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    optimized, _ = train(cfg)
    return optimized


if __name__ == "__main__":
    main()
