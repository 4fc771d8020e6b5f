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
    except (OverflowError, ValueError):  # not a process id at all
        return False
    return True


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``'s 22nd field),
    or None where the system does not say: a reused pid has another start."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
    return fields[19] if len(fields) > 19 else None


def _holder_lives(holder: dict) -> bool:
    """Whether the process a lock of this host names still runs: alive, and started when the lock
    says (where it says; an unrelated process that reuses the pid started later)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not _alive(pid):
        return False
    recorded = holder.get("pid_start")
    return recorded is None or process_start(pid) in (None, recorded)


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    """What identifies the lock file seen (inode, size, modification time), links not followed."""
    try:
        stat = path.lstat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _read_holder(path: Path) -> tuple[dict, str | None]:
    """(the holder a lock names, None) or ({}, why the lock is stale: empty, corrupt, unreadable, a
    dangling link)."""
    if path.is_symlink() and not path.exists():
        return {}, "a link to nothing"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        return {}, f"unreadable ({getattr(error, 'strerror', None) or error})"
    if not text.strip():
        return {}, "empty"
    try:
        holder = json.loads(text)
    except ValueError:
        return {}, "corrupt"
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return {}, "corrupt"
    return holder, None


def _release(path: Path) -> None:
    """Remove the lock at exit if it is still this process's."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def remove_if_unchanged(path: Path, seen: tuple[int, int, int] | None) -> None:
    """Remove the stale lock at ``path`` only while it is still the file ``seen`` (its
    ``_fingerprint``): two runs that take over one stale lock must not remove the lock the first of
    them has just created. The file is renamed aside (atomic: of two renames one wins), and a lock
    that turns out to be another run's fresh one is linked back (unless a third run locked the
    folder meanwhile)."""
    aside = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another run removed it first
    try:
        if _fingerprint(aside) != seen:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path, follow_symlinks=False)
    finally:
        aside.unlink(missing_ok=True)


def take_run_lock(folder: Path, break_lock: bool = False) -> None:
    """Lock ``folder`` for this process (see the module docstring); raises ``OutputExistsError``
    naming the holder and ``break_lock=true`` when another run holds it. A lock that is empty,
    corrupt, unreadable or a dangling link, or names a process of this host that is gone (or whose
    pid another process took since), is stale and taken over; ``break_lock=true`` takes over any."""
    if is_extra_process():
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    if path.is_dir() and not path.is_symlink():
        raise OutputExistsError(f"{path} is a folder, not dsc's lock file: remove it and start again")
    mine = {
        "pid": os.getpid(),
        "pid_start": process_start(os.getpid()),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for _ in range(3):  # again after taking over a stale lock; once more if a run raced for it
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = _fingerprint(path)
            holder, stale = _read_holder(path)
            if holder.get("pid") == mine["pid"] and holder.get("host") == mine["host"]:
                return  # this process took it already (a second Hydra job of the same process)
            pid, host, started = (holder.get(key, "?") for key in ("pid", "host", "started"))
            who = f"process {pid} on {host}, started {started}"
            same_host = holder.get("host") == mine["host"]
            gone = stale is not None or (same_host and not _holder_lives(holder))
            if not (gone or break_lock):
                hint = (
                    "wait for it to finish or use another folder; if that process is no dsc run, "
                    "start again with break_lock=true"
                    if same_host
                    else "if that run is gone, start again with break_lock=true"
                )
                raise OutputExistsError(
                    f"{folder} is in use by another run ({who}; {path}): {hint}"
                ) from None
            reason = f"which is {stale}" if stale else ("as break_lock=true asks" if not gone else "")
            log.warning("taking over %s %s", path, reason or f"left by {who}, which is gone")
            remove_if_unchanged(path, seen)
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump(mine, handle)
        atexit.register(_release, path)
        return
    raise OutputExistsError(
        f"{folder} is in use: another run took {path} while this one took over the stale lock; "
        "check for that run, or start again with break_lock=true"
    )
