"""Scoring a checkpoint on a split of its data, as ``dsc.evaluate`` and ``dsc.table1`` do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from dsc.contracts import InvalidInputError
from dsc.instances import InstanceThresholds
from dsc.metrics import keys
from dsc.training.checkpoint_record import load_model


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
) -> dict[str, float]:
    """The ``val/…`` scores of a checkpoint's model, instances included, on ``split`` of its run's
    data. ``rounding`` replaces the run's rounding; ``data`` replaces the run's data (a config with a
    ``_target_``) or adjusts them (merged keys); ``callbacks`` builds extra callbacks of the
    validation from its data module (e.g. a result-file writer); ``trusted_targets``: what the record
    may name beyond dsc's own (``dsc.training.checkpoint_record.check_trusted``);
    ``scored_thresholds``: the instances that mask AP and PQ count (default: all)."""
    model, record = load_model(ckpt_path, rounding=rounding, trusted_targets=trusted_targets)
    model.score_instances = True
    if scored_thresholds is not None:
        model.instance_thresholds = scored_thresholds
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
