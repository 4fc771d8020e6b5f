"""Scoring a checkpoint on a split of its data, as ``dsc.evaluate`` and ``dsc.table1`` do."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from dsc.contracts import InvalidInputError, Partitioner
from dsc.instances import InstanceThresholds
from dsc.metrics import keys
from dsc.rounding import Rounding
from dsc.training.checkpoint_record import load_model
from dsc.training.module import DeepSpectralClustering


def data_of_split(data_config: DictConfig, split: str) -> DictConfig:
    """The data config whose validation set is ``split``: ``val`` itself; ``test``, the data's test
    set (``data.test``) where they have one; any other name, the validation set's ``split`` key (VOC's
    ``train``, a folder's sub-folder)."""
    data_config = data_config.copy()
    if split == "val":
        return data_config
    if split == "test" and data_config.get("test") is not None:
        data_config.val = data_config.test
        return data_config
    if "split" not in data_config.val:
        known = "val or test" if data_config.get("test") is not None else "val (they have no data.test)"
        raise InvalidInputError(f"split={split}: these data ({data_config.val._target_}) have {known}")
    data_config.val.split = split
    return data_config


def score_checkpoint(
    ckpt_path: str,
    trainer_config: DictConfig,
    rounding: Any = None,
    data: DictConfig | None = None,
    split: str = "val",
    seed: int = 0,
    callbacks: Callable[[pl.LightningDataModule], list[pl.Callback]] | None = None,
    trusted_targets: Any = (),
    scored_thresholds: InstanceThresholds | None = None,
    prepare: Callable[[DeepSpectralClustering], None] | None = None,
) -> dict[str, float]:
    """The ``val/…`` scores of a checkpoint's model, instances included, on ``split`` of its run's
    data. ``rounding`` replaces the run's rounding; ``data`` replaces the run's data (a config with a
    ``_target_``) or adjusts them (merged keys); ``callbacks`` builds extra callbacks of the
    validation from its data module (e.g. a result-file writer); ``trusted_targets``: what the record
    may name beyond dsc's own (``dsc.training.checkpoint_record.check_trusted``);
    ``scored_thresholds``: the instances that mask AP and PQ count (default: all); ``prepare``: called
    with the loaded model before it is scored (``score_roundings``)."""
    model, record = load_model(ckpt_path, rounding=rounding, trusted_targets=trusted_targets)
    model.score_instances = True
    if scored_thresholds is not None:
        model.instance_thresholds = scored_thresholds
    if prepare is not None:
        prepare(model)
    pl.seed_everything(seed, workers=True)
    data_config = OmegaConf.create(record.config["data"])
    if data:
        data_config = data if "_target_" in data else OmegaConf.merge(data_config, data)
    data_config = data_of_split(data_config, split)
    # Only the scored split is built: evaluating on VOC val must not need the SBD training set.
    datamodule = hydra.utils.instantiate(data_config, train=None, test=None)
    extra = callbacks(datamodule) if callbacks is not None else []
    trainer: pl.Trainer = hydra.utils.instantiate(trainer_config, logger=False, callbacks=extra)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if name.startswith(keys.VALIDATION)
    }


def unreadable(rounding: Partitioner, model: DeepSpectralClustering) -> str | None:
    """Why ``rounding`` cannot read ``model``'s outputs, or None: a head the network lacks, or raw
    embeddings of a loss that trains unit vectors (their lengths are arbitrary)."""
    missing = sorted(rounding.heads - model.heads)
    if missing:
        return f"reads the {' and '.join(missing)} head, which this model lacks"
    if (
        isinstance(rounding, Rounding)
        and rounding.embedding == "raw"
        and model.loss.embedding_space == "unit"
    ):
        loss = type(model.loss).__name__
        return f"reads raw embeddings; {loss} trains unit vectors, whose lengths carry nothing"
    return None


@dataclass(frozen=True)
class RoundingScores:
    """``score_roundings``' result. metrics: the validation metrics, each compared rounding's under
    ``val/roundings/<name>/``; unreadable: name → why that rounding cannot read the model (not
    scored); rounding_seconds: name → seconds spent rounding; seconds: the whole scoring's time."""

    metrics: dict[str, float]
    unreadable: dict[str, str]
    rounding_seconds: dict[str, float]
    seconds: float


def score_roundings(
    ckpt_path: str, trainer_config: DictConfig, roundings: Mapping[str, Partitioner], **options: Any
) -> RoundingScores:
    """Score a checkpoint's model with each of ``roundings`` from one pass of the network over the
    split (``DeepSpectralClustering.compare_roundings``), beside its own rounding; ``options`` as
    ``score_checkpoint``'s (``split``, ``seed``, ``trusted_targets``, …)."""
    refused: dict[str, str] = {}
    scored: list[DeepSpectralClustering] = []

    def prepare(model: DeepSpectralClustering) -> None:
        readable = {}
        for name, rounding in roundings.items():
            reason = unreadable(rounding, model)
            if reason is None:
                readable[name] = rounding
            else:
                refused[name] = reason
        model.compare_roundings(readable)
        scored.append(model)

    started = time.perf_counter()
    metrics = score_checkpoint(ckpt_path, trainer_config, prepare=prepare, **options)
    seconds = time.perf_counter() - started
    return RoundingScores(metrics, refused, dict(scored[0].rounding_seconds), seconds)
