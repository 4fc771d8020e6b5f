"""A callback that stops its own process as a cluster, a user or a crash would (for the resume tests)."""

import os
import signal

import pytorch_lightning as pl


class StopAtStep(pl.Callback):
    """When training reaches ``step`` optimizer steps, stop the process ``how``: ``SIGKILL`` (nothing
    can be saved), ``SIGTERM`` (a cluster's time limit), ``SIGINT`` (Ctrl+C) or ``error`` (an
    exception). A resumed run (``ckpt_path`` given) is not stopped."""

    def __init__(self, step: int, how: str = "SIGKILL") -> None:
        if how not in ("SIGKILL", "SIGTERM", "SIGINT", "error"):
            raise ValueError(f"unknown way to stop: {how}")
        self.step = step
        self.how = how

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step != self.step or trainer.ckpt_path is not None:
            return
        if self.how == "error":
            raise RuntimeError(f"failure injected at step {self.step}")
        if self.how == "SIGINT":  # as in a terminal, also when the suite runs where SIGINT is ignored
            signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), getattr(signal, self.how))


class FailBeforeFirstStep(pl.Callback):
    """Fails the first training batch before its optimizer step (a crash of the first step)."""

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        raise RuntimeError("failure injected before the first step")
