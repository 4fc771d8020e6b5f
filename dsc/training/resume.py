"""Continuing a run: which checkpoint ``ckpt_path`` names, whether it is intact, and the config a
resumed run trains with.

A run directory holds one run. A fresh start in a directory that already holds a run's
checkpoints or logs is refused (the earlier run's logs would be deleted and its checkpoints mixed
with the new run's). ``ckpt_path=last`` continues the run with its recorded overrides (in each
checkpoint's record, ``dsc.training.checkpoint_record``), the new command line's on top; overrides
that change the network, its optimizer and schedule, the loss, the data or the seed are refused,
naming the keys.
Hydra's record of the first start, ``.hydra/``, is kept; later starts in the same directory are
recorded in ``.hydra/<date>_<time>/``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

from dsc.contracts import InvalidInputError, OutputExistsError
from dsc.data.files import require_file
from dsc.training.callbacks import LAST_CHECKPOINT
from dsc.training.checkpoint_record import (
    NotADscCheckpoint,
    RunRecord,
    check_trusted,
    read_checkpoint,
    untrusted_entries,
)
from dsc.training.module import non_finite_weights
from dsc.training.run_lock import take_run_lock

log = logging.getLogger(__name__)

# What makes a run this run: a resumed run may change anything else (trainer, loggers, callbacks,
# rounding), but not these config sections.
RUN_IDENTITY = ("seed", "backbone", "model", "loss", "data")
# Keys inside them that do not change what is trained: speed, and where the data are mounted.
MAY_CHANGE_ON_RESUME = (
    "model.compile",
    "model.channels_last",
    "model.instance_metrics",
    "model.rounding",  # the model config's copy of rounding, which a resumed run may change
    "model.monitor",  # the copy of optimized_metric
    "data.num_workers",
    "data.val_batch_size",
)
_LOCATION_SUFFIXES = ("root", "_dir", "_file")
# Left behind by a run in its directory (Hydra's own .hydra/ and <task>.log are written first).
RUN_OUTPUTS = ("checkpoints", "metrics.json", "csv", "tensorboard", "wandb", "images")
RECORD_DIR = ".hydra"
CONFIG_DIR = Path(__file__).parents[1] / "conf"  # dsc's packaged configs


def record_subdir(output_dir: str, break_lock: bool | str = False) -> str:
    """Where Hydra records a start in ``output_dir`` (the ``hydra.output_subdir`` resolver): ``.hydra``
    the first time, ``.hydra/<date>_<time>`` after that, so that the first record is never replaced.

    Hydra asks for it before it writes anything into the folder, so the run takes the folder's lock
    here (``run_lock.take_run_lock``); a folder in use ends the process with one line and exit code 2
    (the traceback with ``HYDRA_FULL_ERROR=1``)."""
    _lock_or_exit(output_dir, break_lock)
    if not (Path(output_dir) / RECORD_DIR / "config.yaml").exists():
        return RECORD_DIR
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    candidate, number = f"{RECORD_DIR}/{stamp}", 1
    while (Path(output_dir) / candidate).exists():
        number += 1
        candidate = f"{RECORD_DIR}/{stamp}_{number}"
    return candidate


def _lock_or_exit(output_dir: str, break_lock: bool | str) -> None:
    try:
        take_run_lock(Path(output_dir), str(break_lock).lower() == "true")
    except OutputExistsError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from error


def log_file(output_dir: str, job_name: str, break_lock: bool | str = False) -> str:
    """``<output_dir>/<job_name>.log``, the run's log file (the ``hydra.job_logging`` file handler's
    resolver): Hydra creates it first of all the run's files, so the run takes its folder's lock here."""
    _lock_or_exit(output_dir, break_lock)
    return str(Path(output_dir) / f"{job_name}.log")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("dsc_record_subdir"):
        OmegaConf.register_new_resolver("dsc_record_subdir", record_subdir, use_cache=True)
    if not OmegaConf.has_resolver("dsc_log_file"):
        OmegaConf.register_new_resolver("dsc_log_file", log_file, use_cache=True)


# What only a training run leaves in its directory: evaluate writes metrics.json and pictures too.
TRAINING_OUTPUTS = tuple(name for name in RUN_OUTPUTS if name not in ("metrics.json", "images"))


def refuse_training_run_directory(folder: Path, key: str, task: str) -> None:
    """Raise ``OutputExistsError`` when ``folder`` (given as ``key``) holds a training run: ``task``
    would write its files (metrics.json, predictions) among the run's and could replace them."""
    found = sorted(name for name in TRAINING_OUTPUTS if (Path(folder) / name).exists())
    if found:
        raise OutputExistsError(
            f"{key}={folder} holds a training run ({', '.join(found)}): {task} does not write into a "
            f"run's folder, where it could replace the run's own files. Leave {key} unset or name "
            "another folder"
        )


def check_fresh_run_directory(output_dir: Path) -> None:
    """Refuse to start a new run where another run has left a checkpoint or final scores (a run that
    failed before its first optimizer step leaves neither, so the corrected command may start)."""
    trained = any((output_dir / "checkpoints").glob("*.ckpt")) or (output_dir / "metrics.json").exists()
    found = sorted(name for name in RUN_OUTPUTS if (output_dir / name).exists()) if trained else []
    if found:
        raise OutputExistsError(
            f"run directory {output_dir} already holds a run ({', '.join(found)}); a new run there would "
            f"delete its logs and mix checkpoints. Resume it with `ckpt_path=last "
            f"hydra.run.dir={output_dir}`, or start afresh in a new directory: leave hydra.run.dir unset "
            "(a new timestamped one) or name an empty one"
        )


class ResumePoint(NamedTuple):
    """The checkpoint a run resumes from and its record (read once, weights memory-mapped)."""

    path: Path
    record: RunRecord


def _read_intact(path: Path) -> tuple[RunRecord | None, str | None]:
    """(the record, None) if ``path`` can be resumed from, else (None, why not: unreadable, not
    dsc's, non-finite weights)."""
    try:
        checkpoint = read_checkpoint(path, mmap=True)
    except NotADscCheckpoint:
        return None, "is not a dsc checkpoint (no record of the run that wrote it)"
    except ValueError as error:
        return None, f"cannot be read ({error.__cause__ or error}); it may be truncated"
    diverged = non_finite_weights(checkpoint["state_dict"])
    if diverged:
        return None, f"holds non-finite weights ({diverged[0]}): it was written after training diverged"
    return RunRecord.of(checkpoint, path), None


def check_checkpoint(path: Path) -> RunRecord:
    """The record of ``path``; ValueError naming ``path`` and the intact checkpoints beside it if it
    cannot be resumed."""
    record, problem = _read_intact(path)
    if record is not None:
        return record
    others = sorted(p for p in path.parent.glob("*.ckpt") if p != path)
    intact = [str(p) for p in others if _read_intact(p)[0] is not None]
    alternatives = (
        f"intact checkpoints in {path.parent}: {', '.join(intact)}; resume from one with ckpt_path=<file>"
        if intact
        else f"no intact checkpoint in {path.parent}: start a new run"
    )
    raise InvalidInputError(f"checkpoint {path} {problem}. {alternatives}")


def resume_path(ckpt_path: str | None, checkpoint_dir: Path) -> ResumePoint | None:
    """The checkpoint ``dsc.train`` resumes from, checked to be intact, with its record:
    ``ckpt_path`` itself, or for ``last`` the run's ``checkpoint_dir/last.ckpt`` when it exists (a
    first start, or a requeued job that had not yet saved one, then starts from scratch). A named
    file that is missing raises."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        path = checkpoint_dir / LAST_CHECKPOINT
        if not path.is_file():
            log.info("ckpt_path=last: no %s yet, starting from scratch", path)
            return None
    else:
        path = Path(ckpt_path)
        require_file(
            path,
            f"ckpt_path={ckpt_path}",
            "give a .ckpt file, or ckpt_path=last with the interrupted run's directory "
            "(hydra.run.dir=<run dir>) to resume its checkpoints/last.ckpt",
        )
    record = check_checkpoint(path)
    log.info("resuming from %s", path)
    return ResumePoint(path, record)


# Keys a file's recorded overrides never set: where Hydra reads configs and writes the run, what the
# command trusts, which checkpoint it reads, and the lock it takes. The command gives them itself.
NOT_FROM_A_FILE = ("hydra", "paths", "trusted_targets", "ckpt_path", "break_lock")
_WRITE_LOCATIONS = ("dir", "dirpath", "path", "file")  # last key parts that name where a run writes


def _holds_interpolation(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        return any(_holds_interpolation(k) or _holds_interpolation(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_interpolation(v) for v in value)
    return False


def recorded_literals(
    recorded: Sequence[str], current: Sequence[str], source: Path, config_dir: Path
) -> list[str]:
    """The recorded overrides of the checkpoint ``source`` that the command's own ``current`` ones
    do not replace (same key and kind), each checked to be a plain literal that a resumed run may
    apply: ``key=value`` with a value of numbers, strings, lists and dicts and no interpolation
    (``${…}``), or ``group=option`` naming one of dsc's packaged configs in ``config_dir``. Raises
    ``InvalidInputError`` naming the file and the override for one that does not parse, adds or
    deletes a key, sweeps, names code (``_target_``), sets a key of ``NOT_FROM_A_FILE``, or moves
    where the run writes (a ``…dir``, ``…path`` or ``…file`` key outside ``data``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    replaced = {(o.key_or_group, o.package, o.type) for o in parser.parse_overrides(list(current))}
    checked = []
    for line in recorded:
        why = None
        try:
            (override,) = parser.parse_overrides([line])
        except Exception as error:  # Hydra's OverrideParseException and friends
            raise InvalidInputError(
                f"{source} records an override that does not parse: {line!r} "
                f"({str(error).strip().splitlines()[0]}). Resume with "
                "the overrides given on the command line, or start a new run"
            ) from None
        key = override.key_or_group
        if (key, override.package, override.type) in replaced:
            continue
        first = key.replace("/", ".").split(".")[0]
        last = key.replace("/", ".").rsplit(".", 1)[-1]
        group = config_dir / key
        if override.type.name != "CHANGE" or override.is_sweep_override() or override.package:
            why = "adds, deletes, sweeps or re-packages a key"
        elif _holds_interpolation(override.value()):
            why = "holds an interpolation"
        elif "_target_" in line or "_args_" in line:
            why = "names code"
        elif first in NOT_FROM_A_FILE or key.startswith("hydra"):
            why = f"sets {first}, which only the command sets"
        elif first != "data" and last.endswith(_WRITE_LOCATIONS):
            why = "moves where the run writes"
        elif group.is_dir() or "/" in key:
            option = override.value()
            if not (isinstance(option, str) and group.is_dir() and (group / f"{option}.yaml").is_file()):
                why = "chooses a config that is not one of dsc's packaged configs"
        if why:
            raise InvalidInputError(
                f"{source} records the override {line!r}, which {why}: dsc does not apply that from a "
                "file. Give it on the command line if you trust it, or start a new run"
            )
        checked.append(line)
    return checked


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, Mapping):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat or {prefix: {}}
    return {prefix: node}


def identity_changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: recorded → current`` for every key of ``RUN_IDENTITY`` that differs (both resolved)."""
    old = _flatten({k: recorded.get(k) for k in RUN_IDENTITY}, "")
    new = _flatten({k: current.get(k) for k in RUN_IDENTITY}, "")
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if key.startswith(MAY_CHANGE_ON_RESUME) or key.rsplit(".", 1)[-1].endswith(_LOCATION_SUFFIXES):
            continue
        missing = "(unset)"
        if old.get(key, missing) != new.get(key, missing):
            changes.append(f"{key}: {old.get(key, missing)!r} → {new.get(key, missing)!r}")
    return changes


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside the entry point: its own search path
        return compose(config_name, overrides=overrides)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name, overrides=overrides)


def resumed_config(cfg: DictConfig, resume: ResumePoint) -> tuple[DictConfig, list[str]]:
    """The config and overrides a run resumed from ``resume`` trains with: the checkpoint's recorded
    overrides with this command's on top. Raises ValueError naming the keys when the result changes
    the run's identity (``RUN_IDENTITY``) against the checkpoint's recorded config."""
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.get()
    current = list(hydra_config.overrides.task)
    overrides = recorded_literals(resume.record.overrides, current, resume.path, CONFIG_DIR) + current
    added = [line for line in overrides if line not in current]
    resumed = _compose(hydra_config.job.config_name, overrides)
    if added:
        log.info("resuming with the run's recorded overrides: %s", " ".join(added))
    # What the command composed from dsc's configs and its own line is trusted, and what it names in
    # trusted_targets; the final config, resolved, must name nothing else, nor must the record.
    own = OmegaConf.to_container(cfg, resolve=True)
    named = {p.split("=", 1)[1] for p in untrusted_entries(own)} | set(cfg.get("trusted_targets") or [])
    final = OmegaConf.to_container(resumed, resolve=True)
    check_trusted(final, resume.path, named)
    check_trusted(resume.record.config, resume.path, named)
    changes = identity_changes(resume.record.config, final)
    if changes:
        hint = ""
        if any(change.startswith("model.scheduler.T_max") for change in changes):
            hint = (
                " (trainer.max_epochs sets the cosine schedule's T_max: a resumed run cannot "
                "stretch its learning-rate schedule; train longer in a new run)"
            )
        raise InvalidInputError(
            f"resuming {resume.path} would change the run: {'; '.join(changes)}{hint}. A resumed "
            "run keeps its network, optimizer, schedule, loss, data and seed: drop the overrides that "
            "change them, or start a new run in a new directory"
        )
    return resumed, overrides
