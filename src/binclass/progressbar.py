"""A progress bar on a terminal, nothing in a log file."""

from __future__ import annotations

import sys
from collections.abc import Callable


def terminal_progress(prefix: str) -> Callable[[int, int], None] | None:
    """An in-place step counter when stderr is a terminal; None (silent) when it is a log file."""
    stream = getattr(sys.stderr, "terminal", sys.stderr)  # a run's captured stderr keeps the terminal here
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // total
        stream.write(f"\r{prefix} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            stream.write("\r" + " " * (len(prefix) + width + 20) + "\r")
        stream.flush()

    return show
