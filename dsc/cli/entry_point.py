"""The skeleton every ``python -m dsc.<entry>`` shares (``entry_point``): Hydra's main on dsc's
configs, the console, true exit codes, the W&B run closed, user errors as one line; and helpers for
entry points (building lists of objects from config, running another entry point)."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import hydra
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dsc.cli.console import print_config, quiet_console
from dsc.cli.help import entry_help
from dsc.cli.overrides import CompositionError, UnknownKeyError, check_overrides
from dsc.cli.schema import register_schemas
from dsc.cli.values import check_values
from dsc.contracts import user_error_of
from dsc.ops.progress import progress
from dsc.training.callbacks import epochs_done, stopped_by_hangup
from dsc.training.resume import register_resolvers

log = logging.getLogger(__name__)
WANDB_LOGGER = "dsc.training.loggers.wandb_logger"
CONFIG_DIR = Path(__file__).parents[1] / "conf"  # shipped inside the package
USER_ERROR_EXIT_CODE = 2
Result = TypeVar("Result")


def instantiate_all(group: DictConfig | None, resumed_wandb_id: str | None = None) -> list[Any]:
    """Instantiate every entry with a ``_target_`` of a config group such as ``callbacks`` or
    ``logger`` (a mapping of names to configs); ``None`` or empty gives an empty list.

    resumed_wandb_id: the W&B run a resumed training continues; W&B loggers without an ``id`` of
    their own log into it (``resume="allow"``).
    """
    if not group:
        return []
    objects = []
    for entry in group.values():
        if not entry or "_target_" not in entry:
            continue
        extra = {}
        if resumed_wandb_id and entry["_target_"] == WANDB_LOGGER and not entry.get("id"):
            extra = {"id": resumed_wandb_id, "resume": "allow"}
        objects.append(hydra.utils.instantiate(entry, **extra))
    return objects


def _finish_wandb(failed: bool) -> None:
    """Close an open W&B run, marking it failed after an exception; does nothing without wandb."""
    wandb = sys.modules.get("wandb")  # never import wandb just to close it
    if wandb is not None and getattr(wandb, "run", None) is not None:
        log.info("closing the W&B run")
        wandb.finish(exit_code=1 if failed else 0)


def task_wrapper(task: Callable[[DictConfig], Result]) -> Callable[[DictConfig], Result]:
    """Run a task once its config's values pass ``dsc.cli.values.check_values``, log its failure with
    the output directory, and always finish the W&B run, so that a crash or a multirun job does not
    leave a run open.

    Exit codes tell the truth: SIGTERM (a cluster's time limit or ``scancel``) exits with 143, SIGHUP
    (a closed terminal) with 129 and
    SIGINT (Ctrl+C) with 130, as a shell reports them, after ``LastCheckpoint`` saved the newest
    state; Lightning would exit with 0 after SIGTERM and 1 after SIGINT.
    """

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> Result:
        failed = True
        output_dir = cfg.paths.get("output_dir")

        def resume() -> str:  # asked after the stop: a closing line points only to what was written
            last = Path(str(output_dir)) / "checkpoints" / "last.ckpt"
            if last.is_file():
                return f"resume with `ckpt_path=last hydra.run.dir={output_dir}`"
            return f"no checkpoint was saved ({last} does not exist): start the run again"

        try:
            check_values(cfg)  # before any work
            result = task(cfg)
            failed = False
            return result
        except SIGTERMException as stop:
            which = signal.SIGHUP if stopped_by_hangup() else signal.SIGTERM
            log.error("stopped by %s; %s", which.name, resume())
            raise SystemExit(128 + which) from stop
        except KeyboardInterrupt as stop:
            log.error("stopped by SIGINT; %s", resume())
            raise SystemExit(128 + signal.SIGINT) from stop
        except SystemExit as stop:
            if isinstance(stop.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1) after Ctrl+C
                log.error("stopped by SIGINT; %s", resume())
                raise SystemExit(128 + signal.SIGINT) from stop
            raise
        except Exception as error:
            if user_error_of(error) is None:  # a user error is the entry point's to report
                log.exception("task failed; its outputs are in %s", output_dir)
            raise
        finally:
            _finish_wandb(failed)

    return wrapped


def run_entry_point(
    module: str, arguments: Sequence[str], what: str, log_file: Path, follow_epochs: bool = False
) -> float:
    """Run ``python -m <module> <arguments>`` as a user would, in its own process, and return its
    seconds; raise RuntimeError naming ``what``, the exit code and ``log_file``, with the end of its
    stderr, when it fails. ``follow_epochs``: a progress bar over the epochs that ``log_file`` (a
    training's log) reports validated."""
    log.info("%s: python -m %s %s", what, module, " ".join(arguments))
    started = time.monotonic()
    # stderr to a file, not a pipe: the child never blocks on it, nor dies with this process.
    with tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", module, *arguments], stdout=subprocess.DEVNULL, stderr=stderr, text=True
        )
        bar = None
        while follow_epochs and child.poll() is None:
            time.sleep(1.0)
            done = epochs_done(log_file)
            if done is not None:
                if bar is None:
                    bar = progress(total=done[1], desc=what, unit="epoch")
                bar.update(done[0] - bar.n)
        child.wait()
        if bar is not None:
            bar.close()
        stderr.seek(0)
        errors = stderr.read()
    if child.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit code {child.returncode}); its log is in {log_file}:\n{errors[-3000:]}"
        )
    return time.monotonic() - started


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Result]], Callable[[], Result]]:
    """Make ``task`` the ``main`` of ``python -m dsc.<entry>`` with config ``conf/<config_name>.yaml``.

    Hydra composes the config (dsc's schemas and resolvers registered first); then the console is
    set up (``quiet_console``), the config logged with ``print_config=true``, and ``task`` runs inside
    ``task_wrapper`` (true exit codes, the W&B run closed). A user error (``dsc.contracts.UserError``,
    also when Hydra wraps it) prints as one line naming what to fix and exits with code 2; set
    ``HYDRA_FULL_ERROR=1`` for its traceback. Before Hydra runs, an override of a key the config
    lacks is refused the same way, naming the closest keys (``dsc.cli.overrides``); ``--help`` prints
    the entry point's own choices and keys (``dsc.cli.help``). ``main`` returns ``task``'s result,
    which Hydra's sweepers read (``optimized_metric``). Each task logs its own closing "where things
    went" block (``dsc.cli.console.where_things_went``).
    """
    register_schemas()
    register_resolvers()

    def decorate(task: Callable[[DictConfig], Result]) -> Callable[[], Result]:
        wrapped = task_wrapper(task)

        @functools.wraps(task)  # Hydra names the job (and its log file) after the task's module
        def main(cfg: DictConfig) -> Result:
            quiet_console()
            print_config(cfg, config_name)
            try:
                return wrapped(cfg)
            except Exception as error:
                mistake = user_error_of(error)
                if mistake is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                log.error("error: %s", mistake)
                raise SystemExit(USER_ERROR_EXIT_CODE) from error

        hydra_main = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)(
            main
        )

        @functools.wraps(hydra_main)
        def checked_main() -> Result:
            if any(argument in ("-h", "--help") for argument in sys.argv[1:]):
                print(entry_help(CONFIG_DIR, config_name))
                raise SystemExit(0)
            try:  # before Hydra: an unknown key is named with the closest known ones
                check_overrides(CONFIG_DIR, config_name, sys.argv[1:], f"python -m dsc.{config_name}")
            except (UnknownKeyError, CompositionError) as error:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"error: {error}", file=sys.stderr)
                raise SystemExit(USER_ERROR_EXIT_CODE) from error
            return hydra_main()

        return checked_main

    return decorate
