"""A callback that stops its own process as a cluster, a user or a crash would (for the resume tests)."""

import os
import signal

import pytorch_lightning as pl


class StopAtStep(pl.Callback):
    """When training reaches ``step`` optimizer steps, stop the process ``how``: ``SIGKILL`` (nothing
    can be saved), ``SIGTERM`` (a cluster's time limit), ``SIGINT`` (Ctrl+C) or ``error`` (an
    exception); ``when``: at the end of that step's batch (``batch_end``), at its start
    (``batch_start``), or during the validation that follows it (``validation``). A resumed run
    (``ckpt_path`` given) is not stopped."""

    def __init__(self, step: int, how: str = "SIGKILL", when: str = "batch_end") -> None:
        if how not in ("SIGKILL", "SIGTERM", "SIGHUP", "SIGINT", "error"):
            raise ValueError(f"unknown way to stop: {how}")
        if when not in ("batch_end", "batch_start", "validation"):
            raise ValueError(f"unknown moment to stop: {when}")
        self.step, self.how, self.when = step, how, when
        self.fired = False  # once: a second SIGINT would be a second Ctrl+C

    def _stop(self, trainer: pl.Trainer, when: str) -> None:
        if when != self.when or trainer.global_step != self.step or trainer.ckpt_path is not None:
            return
        if trainer.state.fn != "fit" or trainer.sanity_checking or self.fired:
            return
        self.fired = True
        if self.how == "error":
            raise RuntimeError(f"failure injected at step {self.step}")
        if self.how == "SIGINT" and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # as in a terminal, also when the suite runs where background jobs ignore SIGINT
            signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), getattr(signal, self.how))

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        self._stop(trainer, "batch_end")

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        self._stop(trainer, "batch_start")

    def on_validation_batch_start(self, trainer: pl.Trainer, *args) -> None:
        self._stop(trainer, "validation")


class FailBeforeFirstStep(pl.Callback):
    """Fails the first training batch before its optimizer step (a crash of the first step)."""

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        raise RuntimeError("failure injected before the first step")
