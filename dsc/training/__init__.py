"""Training: the LightningModule (``module``), its callbacks, the checkpoint record
(``checkpoint_record``: what dsc adds to a checkpoint, and the one place that reads it), resuming a
run (``resume``), scoring a checkpoint (``scoring``), loggers and DDP under Hydra (``distributed``)."""

from dsc.training.callbacks import (
    BestCheckpoint,
    EpochSummary,
    LastCheckpoint,
    NetworkSummary,
    ValidationTime,
)
from dsc.training.module import DeepSpectralClustering

__all__ = [
    "BestCheckpoint",
    "DeepSpectralClustering",
    "EpochSummary",
    "LastCheckpoint",
    "NetworkSummary",
    "ValidationTime",
]
