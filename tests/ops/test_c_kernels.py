"""Building dsc's C kernels and running them on threads."""

import shutil
import threading

import pytest
import torch

from dsc.ops import c_kernels


def test_a_missing_compiler_is_named():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CC", "no-such-compiler")
        with pytest.raises(RuntimeError, match="no C compiler 'no-such-compiler' on PATH"):
            c_kernels.build("dsc.ops", "contingency.c")


@pytest.mark.skipif(shutil.which("false") is None, reason="needs the false command")
def test_a_failing_compiler_is_reported_with_its_commands(monkeypatch):
    monkeypatch.setenv("CC", "false")
    with pytest.raises(RuntimeError, match=r"false -O3 .*contingency\.c"):
        c_kernels.build("dsc.ops", "contingency.c")


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_every_task_runs_once(threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    done, lock = [], threading.Lock()

    def run(task):
        with lock:
            done.append(task)

    c_kernels.run_in_threads(run, 7)
    assert sorted(done) == list(range(7))
    c_kernels.run_in_threads(run, 0)
    assert len(done) == 7
