"""One run per folder: the lock a run takes before Hydra or dsc write anything into its folder."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from dsc.contracts import OutputExistsError
from dsc.training.run_lock import LOCK_FILE, take_run_lock


def lock_of(folder, pid, host=None):
    (folder / LOCK_FILE).write_text(
        json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "x"})
    )


@pytest.fixture
def live_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def test_a_folder_locked_by_a_live_run_is_refused_naming_it(tmp_path, live_process):
    lock_of(tmp_path, live_process)
    with pytest.raises(OutputExistsError, match=rf"in use by another run \(process {live_process} on "):
        take_run_lock(tmp_path)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == live_process


def test_a_lock_left_by_a_process_that_is_gone_is_taken_over(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock_of(tmp_path, gone.pid)
    take_run_lock(tmp_path)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"left by process {gone.pid}" in caplog.text
    take_run_lock(tmp_path)  # this process again: its own lock


def test_taking_over_a_stale_lock_never_removes_the_fresh_lock_of_the_run_that_took_it_first(tmp_path):
    from dsc.training.run_lock import _fingerprint, remove_if_unchanged

    lock = tmp_path / LOCK_FILE
    stale = '{"pid": 1, "host": "h"}'
    lock.write_text(stale)
    remove_if_unchanged(lock, _fingerprint(lock))
    assert not lock.exists() and list(tmp_path.iterdir()) == []
    # Another run took the stale lock over between this run's read and its removal.
    lock.write_text(stale)
    seen = _fingerprint(lock)
    lock.unlink()
    fresh = '{"pid": 2, "host": "h"}'
    lock.write_text(fresh)
    remove_if_unchanged(lock, seen)
    assert lock.read_text() == fresh and list(tmp_path.iterdir()) == [lock]
    remove_if_unchanged(tmp_path / "gone.lock", seen)  # removed by another run first: nothing to do


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda lock: lock.write_text(""), "empty"),
        (lambda lock: lock.write_text('{"pid": '), "corrupt"),
        (lambda lock: lock.write_text('["not", "a", "holder"]'), "corrupt"),
        (lambda lock: lock.write_bytes(b"\xff\xfe\x00"), "unreadable|corrupt"),
        (lambda lock: lock.symlink_to(lock.parent / "nowhere"), "a link to nothing"),
    ],
    ids=["empty", "truncated", "not a holder", "not text", "dangling link"],
)
def test_a_lock_that_names_no_holder_is_stale_and_taken_over(tmp_path, caplog, make, why):
    make(tmp_path / LOCK_FILE)
    take_run_lock(tmp_path)
    lock = tmp_path / LOCK_FILE
    assert not lock.is_symlink() and json.loads(lock.read_text())["pid"] == os.getpid()
    assert re.search(rf"taking over .*which is ({why})", caplog.text)


def test_a_pid_that_another_process_took_since_is_no_holder(tmp_path, live_process, caplog):
    from dsc.training.run_lock import process_start

    assert process_start(live_process) is not None
    (tmp_path / LOCK_FILE).write_text(
        json.dumps({"pid": live_process, "pid_start": "1", "host": socket.gethostname(), "started": "x"})
    )
    take_run_lock(tmp_path)  # the live process started later than the lock says: not the holder
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_break_lock_takes_over_any_lock_and_every_refusal_names_it(tmp_path, live_process):
    lock_of(tmp_path, live_process)
    with pytest.raises(OutputExistsError, match=rf"process {live_process} on .*break_lock=true"):
        take_run_lock(tmp_path)
    take_run_lock(tmp_path, break_lock=True)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_lock_of_another_host_needs_break_lock(tmp_path):
    lock_of(tmp_path, 1, host="elsewhere")
    with pytest.raises(OutputExistsError, match=r"on elsewhere.*start again with break_lock=true"):
        take_run_lock(tmp_path)
    take_run_lock(tmp_path, break_lock=True)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_refused_command_writes_nothing_into_the_folder(tmp_path, live_process):
    folder = tmp_path / "run"
    folder.mkdir()
    lock_of(folder, live_process)
    result = subprocess.run(
        [sys.executable, "-m", "dsc.export", f"ckpt_path={tmp_path / 'x.ckpt'}", f"hydra.run.dir={folder}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"in use by another run (process {live_process}" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in folder.iterdir()) == [LOCK_FILE]


@pytest.mark.slow
def test_of_two_runs_started_together_in_one_folder_one_trains(tmp_path):
    folder = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "dsc.train",
        "debug=fdr",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={folder}",
    ]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(run.wait(timeout=300), run.communicate()[1]) for run in runs]
    assert sorted(code for code, _ in results) == [0, 2], [stderr[-2000:] for _, stderr in results]
    refused = next(stderr for code, stderr in results if code == 2)
    assert "is in use by another run" in refused
    assert not (folder / LOCK_FILE).exists()  # released when the winner ended
    assert len(list((folder / ".hydra").glob("*/config.yaml"))) == 0  # one record: the winner's
