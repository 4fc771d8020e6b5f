"""dsc's C kernels: compiled for this machine the first time a process needs them, loaded with
ctypes and run on threads.

A kernel is a C file inside a dsc package, built with ``$CC`` (default ``cc``) at ``-O3
-march=native`` (512-bit vectors where the machine has them) into a temporary folder that lives as
long as the process, in a fraction of a second. ``build`` raises RuntimeError, with the compiler's
message, where no compiler works; each caller then falls back to its PyTorch operations.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import torch

_FLAGS = ("-O3", "-fno-math-errno", "-shared", "-fPIC")
# The first flags the compiler takes: 512-bit vectors where the machine has them (gcc's default
# for such machines is 256-bit; 512 measured ~7 % faster), this machine's instruction set, or none.
_MACHINE_FLAGS = (("-march=native", "-mprefer-vector-width=512"), ("-march=native",), ())
_BUILD_FOLDER: tempfile.TemporaryDirectory | None = None
_BUILDS = itertools.count()  # a new file name per build: dlopen hands back a loaded name's old code


def build(package: str, source: str, defines: Mapping[str, int] | None = None) -> ctypes.CDLL:
    """Compiles the C file ``source`` of ``package`` (e.g. ``"dsc.losses"``) with ``-D`` defines
    for this machine and loads it. Raises RuntimeError naming the compiler and what it said if no
    flag set compiles, or if there is no compiler."""
    global _BUILD_FOLDER
    if _BUILD_FOLDER is None:
        _BUILD_FOLDER = tempfile.TemporaryDirectory(prefix="dsc-kernels-")
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C compiler {compiler!r} on PATH (set CC to one)")
    library = Path(_BUILD_FOLDER.name) / f"{Path(source).stem}_{next(_BUILDS)}.so"
    macros = [f"-D{name}={value}" for name, value in (defines or {}).items()]
    errors = []
    with resources.as_file(resources.files(package) / source) as path:
        for machine in _MACHINE_FLAGS:
            command = [compiler, *_FLAGS, *machine, *macros, "-o", str(library), str(path), "-lm"]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode == 0:
                return ctypes.CDLL(str(library))
            errors.append(f"{' '.join(command)}: {result.stderr.strip()[-500:]}")
    raise RuntimeError("; ".join(errors))


def build_checked(
    package: str,
    source: str,
    defines: Mapping[str, int] | None,
    declare: Callable[[ctypes.CDLL], None],
    check: Callable[[ctypes.CDLL], str],
    fallback: str,
) -> ctypes.CDLL | None:
    """``build``, then ``declare`` the library's functions (argtypes, restype) and ``check`` it
    against its PyTorch counterpart ('' when they agree, else what differs). None, after one
    RuntimeWarning saying why and what runs instead (``fallback``), where either fails."""
    try:
        library = build(package, source, defines)
        declare(library)
        problem = check(library)
    except (RuntimeError, OSError) as error:  # no compiler; a library that does not load
        problem = str(error)
    if not problem:
        return library
    warnings.warn(
        f"the compiled kernel {source} is not used ({problem}); {fallback}", RuntimeWarning, stacklevel=4
    )
    return None


def run_in_threads(run: Callable[[int], None], count: int) -> None:
    """run(0), …, run(count − 1) on ``torch.get_num_threads()`` threads: a kernel called through
    ctypes releases the GIL, so the calls run in parallel."""
    threads = min(torch.get_num_threads(), count)
    if threads <= 1:
        for task in range(count):
            run(task)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(count)))
