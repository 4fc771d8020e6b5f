"""Writing a file so that a failed write leaves what was there: each file is written to a temporary
file beside it and moved over it in one step (``os.replace``), so a kill, a full disk or a quota
mid-write leaves the old file whole and no half-written one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from PIL import Image


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without an error it takes
    ``path``'s place, and otherwise it is removed and ``path`` is as it was."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
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
