"""dsc's one progress-bar style, for every entry point and the data checks."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")


def progress(iterable: Iterable[Item] | None = None, **settings: Any) -> tqdm:
    """dsc's one progress-bar style (the entry points' and the data checks'): tqdm on stderr,
    shown only on a terminal, redrawn at most once a second, gone when done (the log keeps the
    result); ``settings``: tqdm's ``total``, ``desc``, ``unit``."""
    return tqdm(
        iterable, file=sys.stderr, disable=None, leave=False, mininterval=1, dynamic_ncols=True, **settings
    )
