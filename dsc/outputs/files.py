"""Writing a file so that a failed write leaves what was there: each file is written to a temporary
file beside it and moved over it in one step (``os.replace``), so a kill, a full disk or a quota
mid-write leaves the old file whole and no half-written one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from dsc.contracts import OutputExistsError, naming_failed_writes


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode (hard and symbolic links too) where both
    exist, else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def input_written_by(outputs: Iterable[Path], inputs: Iterable[Path]) -> tuple[Path, Path] | None:
    """The first (output, input) pair where writing ``output`` would replace the input file, or
    None: no command writes onto what it reads."""
    sources = [Path(path) for path in inputs if path is not None]
    for output in outputs:
        for source in sources:
            if _same_file(Path(output), source):
                return Path(output), source
    return None


def refuse_writing_onto_inputs(outputs: Iterable[Path], inputs: Iterable[Path], key: str) -> None:
    """Raise ``OutputExistsError`` when one of ``outputs`` (given as ``key``) is, or links to, one of
    ``inputs``: the command would destroy what it reads, ``overwrite=true`` or not."""
    clash = input_written_by(outputs, inputs)
    if clash is not None:
        output, source = clash
        same = "is" if Path(output).resolve() == Path(source).resolve() else "links to"
        raise OutputExistsError(
            f"{key}={output} {same} {source}, which this command reads: it would destroy its own "
            f"input. Name another {key}"
        )


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without an error it takes
    ``path``'s place, and otherwise it is removed and ``path`` is as it was. A write the file system
    refuses raises ``WriteFailedError`` naming ``path`` and the system's reason."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with naming_failed_writes(path):
            yield partial
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """``path.write_text(text)``, all or nothing."""
    with replacing(path) as partial:
        partial.write_text(text)


def save_image(image: Image.Image, path: Path) -> None:
    """``image.save(path)`` in the format its suffix names, all or nothing."""
    with replacing(path) as partial:
        image.save(partial, format=Image.registered_extensions()[Path(path).suffix.lower()])
