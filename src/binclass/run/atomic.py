"""Files that are either whole or absent: written to a temporary name, flushed to disk, then renamed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(
    path: Path, write: Callable[[Path], None], before_rename: Callable[[], None] | None = None
) -> None:
    """write(tmp) into a temporary file beside `path`, flush it to disk, then rename it over `path`: a
    crash or a full disk never leaves half a file under the final name (a failed temporary file is
    removed). before_rename: a test's hook between the two."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """The rename itself on disk (POSIX keeps it in the folder's entry); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def link_atomically(source: Path, path: Path) -> None:
    """`path` becomes a second name of the file `source` (written whole before): no bytes are copied, and
    neither file is ever changed in place, so each stays whole when the other is replaced. A copy where
    the file system has no hard links."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        write_atomically(path, lambda t: t.write_bytes(source.read_bytes()))
        return
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
