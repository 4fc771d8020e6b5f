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
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger

from dsc.cli.console import where_things_went
from dsc.cli.entry_point import entry_point, instantiate_all, task_wrapper
from dsc.contracts import InvalidInputError
from dsc.data.datamodule import class_names_of
from dsc.data.statistics import TrainingImages
from dsc.metrics import keys
from dsc.outputs.metrics_file import format_metrics_table, write_metrics
from dsc.training.callbacks import LAST_CHECKPOINT, ValidationTime
from dsc.training.checkpoint_record import CheckpointRecord, build_model
from dsc.training.distributed import ddp_job, is_first_process, use_job_directories_for_ddp
from dsc.training.init_from import initialize_from
from dsc.training.loggers import keep_csv_history, log_final_scores
from dsc.training.resume import check_fresh_run_directory, resume_path, resumed_config
from dsc.training.selection import check_rule, mark_selected, selected_path

log = logging.getLogger(__name__)
use_job_directories_for_ddp()


@task_wrapper
def train(cfg: DictConfig) -> tuple[float | None, dict[str, float]]:
    """Run one training job; returns (the value of ``cfg.optimized_metric``, all final metrics)."""
    return _train(cfg)


def _train(cfg: DictConfig) -> tuple[float | None, dict[str, float]]:
    with ddp_job():
        return _train_job(cfg)


def check_training_happens(cfg: DictConfig) -> None:
    """Refuse settings under which a run would train nothing yet report final scores."""
    if cfg.trainer.get("max_epochs") == 0 or cfg.trainer.get("max_steps") == 0:
        key = "trainer.max_epochs" if cfg.trainer.get("max_epochs") == 0 else "trainer.max_steps"
        raise InvalidInputError(
            f"{key}=0 trains nothing: its final scores would be an untrained network's. To score a "
            "checkpoint, use python -m dsc.evaluate ckpt_path=…"
        )


def _train_job(cfg: DictConfig) -> tuple[float | None, dict[str, float]]:
    check_training_happens(cfg)
    check_rule(cfg.selected_checkpoint)
    output_dir = Path(cfg.paths.output_dir)
    resume = resume_path(cfg.get("ckpt_path"), output_dir / "checkpoints")
    overrides = list(HydraConfig.get().overrides.task)
    if resume is not None:
        cfg, overrides = resumed_config(cfg, resume)
    elif is_first_process() and cfg.get("ckpt_path") is None:
        check_fresh_run_directory(output_dir)
    pl.seed_everything(cfg.seed, workers=True)

    model = build_model(cfg)
    if resume is None and model.init_from is not None:  # a resumed run has its own weights
        initialize_from(model.backbone, model.init_from)
    # The test split is never built in training: nothing of it can steer the run.
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data, test=None)
    dataset = datamodule.val_dataset  # its class names go into result files and exports
    class_names = class_names_of(dataset)
    data_name = HydraConfig.get().runtime.choices.get("data") or type(datamodule.train_dataset).__name__
    training_images = TrainingImages.measure(datamodule.train_dataset, data_name)
    run_config = OmegaConf.to_container(cfg, resolve=True)

    validation_time = ValidationTime()
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        sync_batchnorm=cfg.trainer.get("sync_batchnorm", False) and _gpus_requested(cfg.trainer.accelerator),
        callbacks=[
            *instantiate_all(cfg.get("callbacks")),
            validation_time,
            CheckpointRecord(run_config, overrides, class_names, training_images),
        ],
        logger=instantiate_all(
            cfg.get("logger"), resumed_wandb_id=resume.record.wandb_run_id if resume else None
        ),
    )
    if cfg.get("ckpt_path") is not None and trainer.is_global_zero:
        keep_csv_history(trainer.loggers)
    for logger in trainer.loggers:
        logger.log_hyperparams(run_config)
    ckpt_path = resume.path if resume is not None else None

    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - started

    # Score the selected checkpoint (selected_checkpoint: best or last); fast_dev_run and runs
    # without checkpoints score the last weights.
    checkpoints_dir = output_dir / "checkpoints"
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    selected = selected_path(cfg.selected_checkpoint, best, checkpoints_dir / LAST_CHECKPOINT)
    model.score_instances = True  # mask AP and PQ in the final scoring, whatever model.instance_metrics
    started = time.perf_counter()
    loggers, trainer.loggers = trainer.loggers, []  # not another epoch: see log_final_scores below
    # The last weights are the model's own: last.ckpt holds them, and reading it back changes nothing.
    scored = selected if cfg.selected_checkpoint == "best" else None
    trainer.validate(model, datamodule=datamodule, ckpt_path=scored, verbose=False)
    trainer.loggers = loggers
    if selected is not None and trainer.is_global_zero:
        selected = mark_selected(selected, checkpoints_dir)
    metrics = {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if name.startswith(keys.VALIDATION)
    }
    metrics["time/fit_seconds"] = fit_seconds
    metrics["time/validation_seconds"] = validation_time.seconds
    metrics["time/final_scoring_seconds"] = time.perf_counter() - started

    if trainer.is_global_zero:
        share = validation_time.seconds / max(fit_seconds, 1e-9)
        log.info(
            "fit took %.1f s: training %.1f s, validation %.1f s (%.0f %%)",
            fit_seconds,
            fit_seconds - validation_time.seconds,
            validation_time.seconds,
            100 * share,
        )
        log.info(
            "final validation metrics (%s checkpoint, %s):\n%s",
            cfg.selected_checkpoint,
            selected or "last weights",
            format_metrics_table(metrics),
        )
        write_metrics(metrics, output_dir / "metrics.json")
        log_final_scores(trainer.loggers, metrics, run_config)
        for logger in trainer.loggers:
            logger.save()
        log.info(_where_things_went(output_dir, best, selected, trainer.loggers))
    return metrics.get(cfg.optimized_metric), metrics


def _where_things_went(output_dir: Path, best: str, selected: Path | None, loggers: list[Logger]) -> str:
    last = output_dir / "checkpoints" / LAST_CHECKPOINT
    logs = [path for path in (output_dir / "train.log", output_dir / "csv" / "metrics.csv") if path.exists()]
    tensorboard = output_dir / "tensorboard"
    next_steps = []
    if tensorboard.is_dir():
        next_steps.append(f"tensorboard --logdir {tensorboard}")
    if selected or best or last.exists():
        checkpoint = selected or best or last
        next_steps += [
            f"python -m dsc.evaluate ckpt_path={checkpoint} [rounding=kwikcluster_refine] [export=coco]",
            f"python -m dsc.predict ckpt_path={checkpoint} input=<image or folder> output=<folder>",
            f"python -m dsc.export ckpt_path={checkpoint} output=model.onnx",
        ]
    images = output_dir / "images"
    return where_things_went(
        [
            ("run directory", output_dir),
            ("metrics", output_dir / "metrics.json"),
            ("selected checkpoint (scored)", selected),
            ("best checkpoint", best or None),
            ("last checkpoint", last if last.exists() else None),
            ("pictures", f"{images}/epoch_*/val_*.png, final/" if images.is_dir() else None),
            ("logs", ", ".join(str(path) for path in logs) or None),
            ("TensorBoard", tensorboard if tensorboard.is_dir() else None),
            ("composed config", output_dir / ".hydra" if (output_dir / ".hydra").is_dir() else None),
            (
                "W&B",
                output_dir / "wandb" if any(isinstance(logger, WandbLogger) for logger in loggers) else None,
            ),
        ],
        next_steps,
    )


def _gpus_requested(accelerator: str) -> bool:
    """Whether the trainer runs on GPUs; torch's SyncBatchNorm (``trainer=ddp``) works there only,
    so on CPUs each process normalises its own batch (``backbone.norm=group`` needs no syncing)."""
    on_gpus = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not on_gpus:
        log.info("trainer.sync_batchnorm is off: torch's SyncBatchNorm needs GPUs")
    return on_gpus


@entry_point("train")
def main(cfg: DictConfig) -> float | None:
    """``python -m dsc.train``: the value of ``optimized_metric``, for Hydra's sweepers."""
    optimized, _ = _train(cfg)
    return optimized


if __name__ == "__main__":
    main()
