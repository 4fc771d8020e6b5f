"""Logger factories that behave on machines without a login or a network."""

from __future__ import annotations

import logging
import netrc
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

WANDB_DEFAULT_HOST = "https://api.wandb.ai"


def _wandb_host() -> str:
    return os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_HOST)


def _wandb_has_login() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(urlparse(_wandb_host()).hostname or "") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _reachable(url: str, timeout_s: float = 3.0) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wandb_mode(mode: str = "auto") -> str:
    """``online`` or ``offline``: ``auto`` goes online only with a login and a reachable server.

    ``WANDB_MODE=offline`` (or ``disabled``) in the environment always wins over ``auto``.
    """
    if mode not in ("auto", "online", "offline"):
        raise ValueError(f"logger.wandb.mode must be auto, online or offline, got {mode!r}")
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE", "") in ("offline", "dryrun", "disabled"):
        return "offline"
    if not _wandb_has_login():
        log.info("W&B: no login found (wandb login or WANDB_API_KEY), logging offline")
        return "offline"
    if not _reachable(_wandb_host()):
        log.warning("W&B: %s is unreachable, logging offline; upload later with `wandb sync`", _wandb_host())
        return "offline"
    return "online"


def wandb_logger(mode: str = "auto", **kwargs: Any):
    """A Lightning ``WandbLogger`` that logs offline when W&B cannot be reached (see ``wandb_mode``).

    Offline runs are written under ``save_dir``/wandb and can be uploaded later with ``wandb sync``.
    """
    from pytorch_lightning.loggers import WandbLogger

    return WandbLogger(offline=wandb_mode(mode) == "offline", **kwargs)


def keep_csv_history(loggers: list[Any]) -> None:
    """Before a resumed run logs into its old directory, move each CSV logger's ``metrics.csv`` to
    ``metrics.before_resume_<time>.csv``: Lightning's CSV writer would delete it."""
    from pytorch_lightning.loggers import CSVLogger

    for logger in loggers:
        if isinstance(logger, CSVLogger):
            metrics_file = Path(logger.log_dir) / "metrics.csv"
            if metrics_file.is_file():
                kept = metrics_file.with_name(f"metrics.before_resume_{time.strftime('%Y%m%d-%H%M%S')}.csv")
                metrics_file.rename(kept)
                log.info("resuming: the CSV log so far is kept in %s", kept)
