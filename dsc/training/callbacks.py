"""Lightning callbacks of training: the resumable ``last.ckpt``, the best epochs' checkpoints,
validation's share of the fit's time and the network's summary."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from dsc.contracts import InvalidInputError, naming_failed_writes

log = logging.getLogger(__name__)
LAST_CHECKPOINT = "last.ckpt"


def images_in_batch(batch: dict[str, Any]) -> int:
    """The number of images of a batch (``batch_size_fn`` of Lightning's ``ThroughputMonitor``)."""
    return len(batch["image"])


_hung_up = False  # whether this process's training stop came from SIGHUP (its terminal closed)


def stopped_by_hangup() -> bool:
    """Whether the SIGTERM-like stop of this process's training was a SIGHUP (exit code 129)."""
    return _hung_up


def _hang_up(signum: int, frame: Any) -> None:
    """SIGHUP (a closed terminal or ssh session) stops training as SIGTERM does: Lightning's
    handler saves at the next batch and stops."""
    global _hung_up
    _hung_up = True
    handler = signal.getsignal(signal.SIGTERM)
    if callable(handler):
        handler(signal.SIGTERM, frame)
    else:  # no SIGTERM handler of Lightning's: stop as SIGTERM would
        raise SystemExit(128 + signal.SIGHUP)


class LastCheckpoint(pl.Callback):
    """The run's one resumable state, ``<dirpath>/last.ckpt``, always the newest.

    Written every ``every_n_train_steps`` optimizer steps, after every validation of ``fit``, at the
    end of training, and when training stops early: on SIGTERM or SIGHUP (Lightning stops at the next batch),
    SIGINT or any other exception, so that ``ckpt_path=last`` continues from where the run stopped.
    The first Ctrl+C (SIGINT) during ``fit`` asks for a stop like SIGTERM: the run trains to the end
    of the batch, saves there and then stops with ``KeyboardInterrupt``, so a resumed run trains the
    batch that comes next (an interrupt mid-step would save a loader already past it); a second
    Ctrl+C stops at once. A run stopped by an exception resumes after the batch it failed on. Each
    write goes to a temporary file that is then renamed, so a run killed while writing keeps the
    previous ``last.ckpt`` whole. Nothing is written with non-finite weights (``DeepSpectralClustering``
    refuses to save them).
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 100) -> None:
        if every_n_train_steps < 1:
            raise InvalidInputError(f"every_n_train_steps must be at least 1, got {every_n_train_steps}")
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        self._saved_step: int | None = None
        self._interrupted = False
        self._previous_handler: Any = None

    @property
    def path(self) -> Path:
        return self.dirpath / LAST_CHECKPOINT

    def save(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` (all processes must call this; rank zero writes); not in fast_dev_run."""
        if trainer.fast_dev_run:
            return
        temporary = self.path.with_name(f".{LAST_CHECKPOINT}.partial")
        try:
            with naming_failed_writes(self.path):
                trainer.save_checkpoint(temporary)  # ends with a barrier: every rank waits for the write
                if trainer.is_global_zero:
                    os.replace(temporary, self.path)
        finally:
            if trainer.is_global_zero:
                temporary.unlink(missing_ok=True)
        self._saved_step = trainer.global_step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._interrupted = False
            self._previous_handler = signal.signal(signal.SIGINT, self._ask_to_stop)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, _hang_up)

    def _ask_to_stop(self, signum: int, frame: Any) -> None:
        if self._interrupted:  # the second Ctrl+C: stop now
            raise KeyboardInterrupt
        self._interrupted = True
        log.warning("Ctrl+C: saving last.ckpt at the end of this batch, then stopping (again: stop now)")

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step
        interrupted = self._interrupted
        if trainer.world_size > 1:  # every process stops at the same batch
            interrupted = trainer.strategy.reduce_boolean_decision(interrupted, all=False)
        if step != self._saved_step and (
            step % self.every_n_train_steps == 0 or trainer.received_sigterm or interrupted
        ):
            self.save(trainer)
        if interrupted:
            self._restore_handler()
            raise KeyboardInterrupt

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handler()
        if trainer.global_step != self._saved_step:
            self.save(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handler()
        if trainer.state.fn != "fit" or isinstance(exception, FloatingPointError):
            return  # not training, or diverged: the last finite state stays last.ckpt
        if trainer.global_step in (0, self._saved_step):
            return  # before the first optimizer step there is nothing to resume; or saved already
        if trainer.world_size > 1 and not trainer.received_sigterm:
            # The other processes are not here to save with this one (SIGTERM reaches them all).
            log.warning(
                "training failed in one of %d processes; last.ckpt is not updated", trainer.world_size
            )
            return
        try:
            self.save(trainer)
            log.warning("training stopped (%s): saved %s", type(exception).__name__, self.path)
        except Exception as error:  # never hide the exception that stopped training
            log.error("training stopped and %s could not be updated: %s", self.path, error)


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (the best epochs by ``monitor``) whose failed writes are one
    ``WriteFailedError`` naming the checkpoint file and the system's reason."""

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        with naming_failed_writes(Path(filepath)):
            super()._save_checkpoint(trainer, filepath)


class ValidationTime(pl.Callback):
    """Seconds spent in validation during ``fit`` (rounding, metrics, pictures and the sanity check
    included), so a run can report how its time splits between training and validation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None


EPOCH_LINE = "epoch {epoch}/{epochs} validated: {monitor} {value}"  # what EpochSummary logs
EPOCH_PATTERN = re.compile(r"epoch (\d+)/(\d+) validated: (\S+) (\S+)")  # and how it is read back


def epochs_done(log_file: Path) -> tuple[int, int] | None:
    """(epochs validated, epochs in all) by the newest ``EpochSummary`` line of a run's log, or None."""
    try:
        matches = EPOCH_PATTERN.findall(log_file.read_text(errors="replace"))
    except OSError:
        return None
    return (int(matches[-1][0]), int(matches[-1][1])) if matches else None


class EpochSummary(pl.Callback):
    """Log one line per validated training epoch, ``epoch 3/6 validated: val/pairwise_fg_f1 0.9826``,
    into the run's log (``train.log``), where the progress of a run is read by the commands that
    start one (``dsc.table1``, ``dsc.demo``) and by people."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        monitor = pl_module.monitor
        value = trainer.callback_metrics.get(monitor)
        shown = "-" if value is None else f"{float(value):.4f}"
        log.info(
            EPOCH_LINE.format(
                epoch=trainer.current_epoch + 1, epochs=trainer.max_epochs, monitor=monitor, value=shown
            )
        )


class NetworkSummary(pl.Callback):
    """Log the network a run trains, once at the start of ``fit``: its type, its parameters (and
    their size in MiB) in total and per top-level block, and the heads. Lightning's own summary
    would list every metric module of the LightningModule too, each with 0 parameters."""

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        backbone = pl_module.backbone
        heads = []
        if pl_module.embed_dim:
            heads.append(f"embedding d = {pl_module.embed_dim}")
        if pl_module.num_classes:
            heads.append(f"classes C = {pl_module.num_classes}")
        lines = [
            f"network: {type(backbone).__name__} ({type(backbone).__module__}), "
            f"{_count(backbone)} parameters ({_mebibytes(backbone):.1f} MiB), heads: {', '.join(heads)}"
        ]
        for name, block in backbone.named_children():
            lines.append(f"  {name:<12} {type(block).__name__:<20} {_count(block):>8}")
        log.info("\n".join(lines))


def _count(module: Any) -> str:
    """A module's parameter count, as Lightning prints them (42.5 K, 134 M)."""
    number = sum(p.numel() for p in module.parameters())
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if number >= size:
            return f"{number / size:.1f} {unit}"
    return str(number)


def _mebibytes(module: Any) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20
