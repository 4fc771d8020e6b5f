"""One run per folder: a lock file that a run takes before anything is written into its folder.

``take_run_lock`` creates ``<folder>/.dsc.lock`` exclusively (``O_CREAT | O_EXCL``: of two runs
started together, exactly one creates it), holding the process id, the host and the start time; the
file is removed when the process exits. A folder locked by a live process is refused; a lock left by
a process that is gone (killed, its machine restarted) is named and taken over when it was left on
this host, and on another host only with ``break_lock=true`` (the run cannot see whether that
process lives). The extra processes of one run (DDP ranks, SLURM tasks) share their first process's
lock. Hydra's record of a start is written after the lock is taken (``resume.record_subdir``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path

from dsc.contracts import OutputExistsError

log = logging.getLogger(__name__)
LOCK_FILE = ".dsc.lock"
# Set in the extra processes of a run; their first process holds the run's lock.
RANK_VARIABLES = ("LOCAL_RANK", "RANK", "SLURM_PROCID")


def is_extra_process() -> bool:
    return any(os.environ.get(name, "0") != "0" for name in RANK_VARIABLES)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _release(path: Path) -> None:
    """Remove the lock at exit if it is still this process's."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def remove_if_unchanged(path: Path, seen: str | None) -> None:
    """Remove the stale lock at ``path`` only while it still holds ``seen``, the text read from it:
    two runs that take over one stale lock must not remove the lock the first of them has just
    created. The file is renamed aside (atomic: of two renames one wins), and a lock that turns out
    to be another run's fresh one is linked back (unless a third run locked the folder meanwhile)."""
    aside = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another run removed it first
    try:
        if seen is None or aside.read_text() != seen:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)


def take_run_lock(folder: Path, break_lock: bool = False) -> None:
    """Lock ``folder`` for this process (see the module docstring); raises ``OutputExistsError``
    naming the holder when another run holds it."""
    if is_extra_process():
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):  # a second try after taking over a stale lock
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                text = path.read_text()
                holder = json.loads(text)
            except (OSError, ValueError):
                text, holder = None, {}
            if holder.get("pid") == mine["pid"] and holder.get("host") == mine["host"]:
                return  # this process took it already (a second Hydra job of the same process)
            same_host = holder.get("host") == mine["host"]
            gone = same_host and isinstance(holder.get("pid"), int) and not _alive(holder["pid"])
            pid, host, started = (holder.get(key, "?") for key in ("pid", "host", "started"))
            who = f"process {pid} on {host}, started {started}"
            if not (gone or break_lock):
                hint = (
                    "wait for it to finish, or use another folder"
                    if same_host
                    else "if that run is gone, start again with break_lock=true"
                )
                raise OutputExistsError(
                    f"{folder} is in use by another run ({who}; {path}): {hint}"
                ) from None
            log.warning("taking over %s, left by %s, which is gone", path, who)
            remove_if_unchanged(path, text)
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump(mine, handle)
        atexit.register(_release, path)
        return
    raise OutputExistsError(f"{folder} is in use: another run took {path} at the same moment")
