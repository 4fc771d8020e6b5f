"""Logger factories that behave on machines without a login or a network."""

from __future__ import annotations

import base64
import json
import logging
import netrc
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import WandbLogger

from dsc.contracts import InvalidInputError

log = logging.getLogger(__name__)

WANDB_DEFAULT_HOST = "https://api.wandb.ai"


def _wandb_host() -> str:
    return os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_HOST)


def _wandb_has_login() -> bool:
    return _api_key() is not None


def _api_key() -> str | None:
    key = os.environ.get("WANDB_API_KEY")
    if key:
        return key
    try:
        entry = netrc.netrc().authenticators(urlparse(_wandb_host()).hostname or "")
    except (FileNotFoundError, netrc.NetrcParseError):
        return None
    return entry[2] if entry else None


def server_problem(url: str, timeout_s: float) -> str | None:
    """Why W&B's server at ``url`` cannot be used now, or None when it answers as W&B does.

    One GraphQL request (``viewer``, with the login) within ``timeout_s``: a refused or broken
    connection, a TLS failure, an HTTP error status, an answer that is not W&B's JSON, or no answer
    in time all count as unusable.
    """
    request = urllib.request.Request(
        url.rstrip("/") + "/graphql",
        data=json.dumps({"query": "query Viewer { viewer { id } }"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    key = _api_key()
    if key:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"api:{key}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read(1 << 20))
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code} {error.reason}"
    except (OSError, ValueError) as error:  # URLError, TLS, timeouts and resets are OSErrors
        return f"{type(error).__name__}: {getattr(error, 'reason', error)}"
    if not isinstance(answer, dict) or "data" not in answer:
        return "the answer is not W&B's"
    return None


def wandb_mode(mode: str = "auto", timeout_s: float = 10.0) -> str:
    """``online`` or ``offline``: ``auto`` goes online only with a login and a server that answers
    within ``timeout_s`` seconds (see ``server_problem``).

    ``WANDB_MODE=offline`` (or ``disabled``) in the environment always wins over ``auto``.
    """
    if mode not in ("auto", "online", "offline"):
        raise InvalidInputError(f"logger.wandb.mode must be auto, online or offline, got {mode!r}")
    if not 0 < timeout_s <= 30:
        raise InvalidInputError(f"logger.wandb.timeout_s must be in (0, 30] seconds, got {timeout_s}")
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE", "") in ("offline", "dryrun", "disabled"):
        return "offline"
    if not _wandb_has_login():
        log.info("W&B: no login found (wandb login or WANDB_API_KEY), logging offline")
        return "offline"
    problem = server_problem(_wandb_host(), timeout_s)
    if problem is not None:
        log.warning(
            "W&B: %s cannot be used (%s), logging offline; upload later with `wandb sync`",
            _wandb_host(),
            problem,
        )
        return "offline"
    return "online"


def wandb_logger(mode: str = "auto", timeout_s: float = 10.0, **kwargs: Any):
    """A Lightning ``WandbLogger`` that logs offline when W&B cannot be used (see ``wandb_mode``).

    In ``auto`` mode an online start that still fails (the server stops answering, or answers
    with errors) also falls back to offline, after at most ``timeout_s`` seconds of W&B's own
    start-up wait. Offline runs are written under ``save_dir``/wandb; upload them later with
    ``wandb sync``.
    """
    resolved = wandb_mode(mode, timeout_s)
    if resolved == "online" and "settings" not in kwargs:
        import wandb

        kwargs["settings"] = wandb.Settings(init_timeout=timeout_s)
    return FallbackWandbLogger(offline=resolved == "offline", fall_back=mode == "auto", **kwargs)


class FallbackWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` whose run, if it fails to start online, starts offline instead
    (with ``fall_back``), with one warning line."""

    def __init__(self, *args: Any, fall_back: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fall_back = fall_back

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        try:
            return WandbLogger.experiment.fget(self)
        except Exception as error:
            if self._offline or not self._fall_back:
                raise
            import wandb

            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            log.warning(
                "W&B: the online run did not start (%s: %s), logging offline; upload later with `wandb sync`",
                type(error).__name__,
                first_line,
            )
            if wandb.run is not None:
                wandb.finish(exit_code=1, quiet=True)
            self._offline = True
            self._wandb_init["mode"] = "offline"
            self._experiment = None
            return WandbLogger.experiment.fget(self)


def run_name(output_dir: str, task_name: str) -> str:
    """The name TensorBoard and W&B give a run (``${dsc_run_name:output_dir,task_name}`` in the
    logger configs): ``<task_name>/<date>`` for a run directory (``logs/<task>/runs/<date>``),
    ``<task_name>/<date>/<job>`` for a sweep's job (``logs/<task>/multiruns/<date>/<job>``), and
    ``<task_name>/<folder name>`` for any other output directory. A resumed run keeps its name."""
    folder = Path(output_dir)
    if folder.parent.parent.name == "multiruns":
        return f"{task_name}/{folder.parent.name}/{folder.name}"
    return f"{task_name}/{folder.name}"


FINAL_SCORES_RUN = "final_scores"  # TensorBoard's sub-run of a run's final scores


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, int | float | str | bool]:
    """A nested config as dotted keys with the values TensorBoard's HParams tab shows (numbers,
    strings and booleans; anything else, lists and None included, as its text)."""
    flat: dict[str, int | float | str | bool] = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat |= flat_config(value, f"{key}.")
        else:
            flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


def log_final_scores(loggers: list[Any], scores: dict[str, float], run_config: dict[str, Any]) -> None:
    """Give each logger the final scores where it keeps a run's results, not as one more point of
    its curves: W&B's run summary; TensorBoard's HParams tab (the flattened config beside the scores,
    whose values live in the sub-run ``final_scores`` under the curves' own tags) and a table in its
    Text tab. The CSV logger gets nothing: ``metrics.json`` holds them."""
    from pytorch_lightning.loggers import TensorBoardLogger
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(scores)
        elif isinstance(logger, TensorBoardLogger):
            table = "| score | value |\n|---|---|\n" + "".join(
                f"| {name} | {value:.4f} |\n" for name, value in sorted(scores.items())
            )
            logger.experiment.add_text("final scores", table)
            logger.experiment.flush()
            with SummaryWriter(log_dir=str(Path(logger.log_dir) / FINAL_SCORES_RUN)) as writer:
                for summary in hparams(flat_config(run_config), scores):
                    writer.file_writer.add_summary(summary)
                for name, value in scores.items():
                    writer.add_scalar(name, value)


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
