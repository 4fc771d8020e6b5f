"""Structured-config schemas, so that Hydra rejects wrong values at composition with a clear
message (``trainer.max_epochs=three`` → "could not be converted to Integer"), not mid-run."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

import pytorch_lightning as pl
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from dsc.data.datamodule import InstanceDataModule
from dsc.losses import ContrastiveLoss, DiscriminativeLoss
from dsc.metrics import keys
from dsc.training.loggers import run_name
from dsc.training.module import DeepSpectralClustering

# Annotations that OmegaConf can check; anything richer is typed Any.
_CHECKABLE = {int, float, bool, str, *(typing.Optional[t] for t in (int, float, bool, str))}  # noqa: UP045
_PASSED_AT_RUN_TIME = {"self", "callbacks", "logger"}


def signature_schema(name: str, target: type, skip: set[str] = _PASSED_AT_RUN_TIME) -> type:
    """A dataclass of every argument of ``target``'s ``__init__`` with the signature's own default
    (``???``, required, where it has none), typed where OmegaConf can check it, and ``_target_``
    naming ``target``: the one place a default lives is the code."""
    hints = typing.get_type_hints(target.__init__)
    fields: list[tuple[str, Any, Any]] = [
        ("_target_", str, dataclasses.field(default=f"{target.__module__}.{target.__qualname__}"))
    ]
    for argument, parameter in inspect.signature(target.__init__).parameters.items():
        if argument in skip:
            continue
        hint = hints.get(argument, Any)
        default = MISSING if parameter.default is inspect.Parameter.empty else parameter.default
        fields.append((argument, hint if hint in _CHECKABLE else Any, dataclasses.field(default=default)))
    return dataclasses.make_dataclass(name, fields)


@dataclasses.dataclass
class SpectralLossSchema:
    _target_: str = "dsc.losses.SpectralLoss"
    norm: str = "frobenius"
    p: float | None = None
    sample_size: int | None = None
    ignore_index: int = 255
    sampling: str = "uniform"
    fused: bool = True


@dataclasses.dataclass
class JointLossSchema(SpectralLossSchema):
    _target_: str = "dsc.losses.JointLoss"
    class_weight: float = 1.0


@dataclasses.dataclass
class TrainSchema:
    task_name: str = "train"
    print_config: bool = False
    tags: list[str] = dataclasses.field(default_factory=list)
    seed: int = 0
    optimized_metric: str = keys.MONITOR
    selected_checkpoint: str = "best"
    ckpt_path: str | None = None
    trusted_targets: list[str] = dataclasses.field(default_factory=list)
    break_lock: bool = False
    model: Any = None
    data: Any = None
    backbone: Any = None
    loss: Any = None
    rounding: Any = None
    trainer: Any = None
    callbacks: Any = None
    logger: Any = None
    paths: Any = None
    hparams_search: Any = None


def register_schemas() -> None:
    """Store the schemas where the configs' defaults lists name them (``*_schema``), and register
    the resolvers ``${dsc_sum:a,b}`` (a + b: the backbones' output channels, d + C) and
    ``${dsc_run_name:output_dir,task_name}`` (the loggers' run name, ``dsc.training.loggers.run_name``)."""
    if not OmegaConf.has_resolver("dsc_sum"):
        OmegaConf.register_new_resolver("dsc_sum", lambda *terms: sum(int(term) for term in terms))
    if not OmegaConf.has_resolver("dsc_run_name"):
        OmegaConf.register_new_resolver("dsc_run_name", run_name)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainSchema)
    # At the top level, not in the trainer/ and loss/ groups: they are no choices for --help to list.
    store.store(name="trainer_schema", node=signature_schema("TrainerSchema", pl.Trainer))
    store.store(name="model_schema", node=signature_schema("ModelSchema", DeepSpectralClustering, {"self"}))
    store.store(name="data_schema", node=signature_schema("DataSchema", InstanceDataModule, {"self"}))
    store.store(name="spectral_loss_schema", node=SpectralLossSchema)
    store.store(name="joint_loss_schema", node=JointLossSchema)
    for name, loss in (("discriminative", DiscriminativeLoss), ("contrastive", ContrastiveLoss)):
        schema = signature_schema(f"{name.title()}LossSchema", loss, {"self"})
        store.store(name=f"{name}_loss_schema", node=schema)
