"""The one rule that chooses the checkpoint a run's results come from: ``selected_checkpoint=best``
(the best epoch by ``optimized_metric`` on the validation split) or ``last`` (the end of training).
The run's own final scores, ``dsc.evaluate ckpt_path=<run>/checkpoints/selected.ckpt`` and
``dsc.table1`` all score that one file, ``checkpoints/selected.ckpt``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dsc.contracts import InvalidInputError, naming_failed_writes

RULES = ("best", "last")
SELECTED_CHECKPOINT = "selected.ckpt"


def check_rule(rule: str) -> None:
    if rule not in RULES:
        raise InvalidInputError(
            f"selected_checkpoint={rule}: choose best (by optimized_metric on the validation split) or last"
        )


def selected_path(rule: str, best: str | Path | None, last: Path) -> Path | None:
    """The file ``rule`` chooses: the best epoch's checkpoint (None without one: fast_dev_run, no
    checkpoint callback) or ``last``."""
    check_rule(rule)
    if rule == "best":
        return Path(best) if best else None
    return last if last.is_file() else None


def mark_selected(checkpoint: Path, checkpoints_dir: Path) -> Path:
    """Make ``checkpoints_dir/selected.ckpt`` the file ``checkpoint`` is now (a hard link, or a copy
    where the file system has none; ``checkpoint`` may lie in another folder), in one step; return
    its path. A later ``last.ckpt`` replaces
    its own name only, so the selected state stays as it was scored."""
    selected = checkpoints_dir / SELECTED_CHECKPOINT
    if Path(checkpoint).resolve() == selected.resolve():
        return selected
    # The best epoch may have been written elsewhere (a checkpoint callback of the user's own).
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    partial = selected.with_name(f".{SELECTED_CHECKPOINT}.partial-{os.getpid()}")
    try:
        with naming_failed_writes(selected):
            partial.unlink(missing_ok=True)
            try:
                os.link(checkpoint, partial)
            except OSError:
                shutil.copyfile(checkpoint, partial)
            os.replace(partial, selected)
    finally:
        partial.unlink(missing_ok=True)
    return selected
