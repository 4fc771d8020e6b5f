"""What the entry points print: Lightning's messages routed into the run's log file, the known
noise left out (in one place), the config on request, and a closing "where things went" block."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

log = logging.getLogger(__name__)

# Messages of Lightning and its dependencies that say nothing about the run.
KNOWN_NOISE = (
    "💡 Tip:",  # advertisements for Lightning's cloud products
    "Trainer already configured with model summary callbacks",  # dsc configures its own summary
    "`weights_only` was not set",  # Lightning's own torch.load of dsc's plain checkpoints
)
KNOWN_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning's _pytree under torch 2.14
    r".*'set_vital' is deprecated.*",  # torchdata's loader under torch 2.14
    r".*does not have many workers.*",  # the built-in data need none
    # dsc's metrics synchronise themselves (torchmetrics states, all_gather of instances) before
    # the values are logged, so Lightning's advice to add sync_dist does not apply.
    r".*when logging on epoch level in distributed setting.*",
)


class _AboveProgressBars(logging.StreamHandler):
    """A console handler that writes each record on its own line above any running tqdm bar (the
    bar is cleared, the line written, the bar redrawn), so no bar is glued to a log line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


class _WithoutKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in KNOWN_NOISE)


def quiet_console() -> None:
    """Route Lightning's log messages and Python's warnings through the handlers Hydra set up
    (console and the run's ``<task>.log``), without the known noise, the console's lines above any
    progress bar; and ignore warnings known to be harmless."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logger = logging.getLogger(name)
        logger.handlers.clear()  # its own stderr handler, added when no root handler existed yet
        logger.propagate = True
    root = logging.getLogger()
    for index, handler in enumerate(root.handlers):  # Hydra's console handler: above the bars
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.stdout):
            above = _AboveProgressBars(handler.stream)
            above.setLevel(handler.level)
            above.setFormatter(handler.formatter)
            for existing in handler.filters:
                above.addFilter(existing)
            root.handlers[index] = above
    noise_filter = _WithoutKnownNoise()
    for handler in root.handlers:
        if not any(isinstance(f, _WithoutKnownNoise) for f in handler.filters):
            handler.addFilter(noise_filter)
    for pattern in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logging.captureWarnings(True)  # the other warnings go to the run's log file too


def print_config(cfg: DictConfig, task: str) -> None:
    """Log the composed config when ``print_config=true`` (every entry point has the key)."""
    if cfg.get("print_config"):
        log.info("%s config:\n%s", task, OmegaConf.to_yaml(cfg, resolve=True))


def where_things_went(places: Sequence[tuple[str, str | Path | None]], next_steps: Sequence[str]) -> str:
    """The closing block of an entry point: what is where, then the commands to run next.
    Places without a path (None) are left out."""
    shown = [(name, str(path)) for name, path in places if path is not None]
    width = max((len(name) for name, _ in shown), default=0)
    lines = ["where things went:"] + [f"  {name.ljust(width)}  {path}" for name, path in shown]
    if next_steps:
        lines += ["next:"] + [f"  {command}" for command in next_steps]
    return "\n".join(lines)
