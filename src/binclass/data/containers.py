"""Images that live inside a container file (a WebDataset tar shard, a Hugging Face parquet shard or arrow
file) instead of as files of their own. Each is named by a path below its container:

    shards/train-00000.tar/cat_0001.jpg                       the tar member cat_0001.jpg
    data/train-00000-of-00002.parquet/000123/cat_0001.jpg     row 123 of the shard (the image's own name)

so the rest of binclass handles it as it handles a file: listed in predictions.csv, shown in the gallery,
found by the duplicate search, decoded by data.decode.open_rgb, which asks member_bytes for its bytes.

The bytes a form reads in order (data.shards) are kept in memory up to MEMORY_BYTES; past that, and in a
later process (`binclass explain` on a run), a member is read from its container by random access."""

from __future__ import annotations

import atexit
import hashlib
import os
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path, PurePath

# Encoded images are held while a run lasts. 2 GiB is the encoded size of roughly 100,000 photos of the
# web's usual 20 kB; the decoded 224 px arrays of as many take 15 GB, so this is never what runs short first.
MEMORY_BYTES = 2 * 1024**3
CONTAINER_SUFFIXES = (".tar", ".parquet", ".arrow")

_memory: dict[str, bytes] = {}
_held = [0]
_lock = threading.Lock()


def remember(path: Path, data: bytes) -> None:
    """Keep a member's bytes, read in order by its form, for the decode that follows."""
    with _lock:
        key = str(path)
        if key in _memory or _held[0] + len(data) > MEMORY_BYTES:
            return
        _memory[key] = data
        _held[0] += len(data)


def forget() -> None:
    """Drop every member's bytes held in memory (and the open containers): later reads go to the files."""
    with _lock:
        _memory.clear()
        _held[0] = 0
        for tar, _ in _tars.values():
            tar.close()
        _tars.clear()
        _tables.clear()


atexit.register(forget)  # close the shards held open for random access


def container_of(path: Path | str) -> tuple[Path, str] | None:
    """(container file, member name inside it) when path lies inside a container file, else None.
    Looks at the name first, so that an ordinary path costs no file-system call."""
    pure = PurePath(path)
    for parent in pure.parents:
        if parent.suffix.lower() in CONTAINER_SUFFIXES and Path(parent).is_file():
            return Path(parent), pure.relative_to(parent).as_posix()
    return None


def member_bytes(path: Path | str) -> bytes | None:
    """The bytes of the member that path names, or None when path is not inside a container.
    Raises OSError (or KeyError) when the container cannot be read or does not hold the member."""
    data = _memory.get(str(path))
    if data is not None:
        return data
    found = container_of(path)
    if found is None:
        return None
    container, inner = found
    return _READERS[container.suffix.lower()](container, inner)


def member_digest(path: Path | str) -> str | None:
    """A hash of a member's bytes (what a cache keys it by: its content), or None for an ordinary file."""
    data = member_bytes(path)
    return None if data is None else hashlib.sha1(data).hexdigest()


# Content hashes by file version, remembered for the process: the feature cache, the decoder that keeps
# the duplicate search's hashes, and the search itself key by an image's bytes, and each would otherwise
# read and hash every file again (100,000 photos: 2 GB, three times).
_digests: dict[tuple[str, int, int], str] = {}


def content_digest(path: Path | str, data: bytes | None = None) -> str:
    """The sha1 of an image's bytes, a file's or a shard member's (data: those bytes, when the caller has
    read them already). Raises OSError (or KeyError) when they cannot be read."""
    if container_of(path) is not None:
        return hashlib.sha1(data if data is not None else member_bytes(path)).hexdigest()
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    found = _digests.get(key)
    if found is None:
        found = hashlib.sha1(data if data is not None else Path(path).read_bytes()).hexdigest()
        _digests[key] = found
    return found


# --- random access, for members whose bytes are not held --------------------------------------------------
_tars: dict[Path, tuple[tarfile.TarFile, threading.Lock]] = {}
_tables: dict[Path, tuple[object, object]] = {}  # container -> (reader, (row group, column) last read)


def _read_tar(container: Path, inner: str) -> bytes:
    with _lock:
        if container not in _tars:
            # kept open for the members that follow; forget() closes it
            _tars[container] = (tarfile.open(container, "r:"), threading.Lock())  # noqa: SIM115
        tar, own = _tars[container]
    with own:
        handle = tar.extractfile(inner)  # the member index is built once, on the first lookup
        if handle is None:
            raise KeyError(f"{inner} is not a file in {container}")
        return handle.read()


def _row(inner: str) -> int:
    head = inner.split("/", 1)[0]
    if not head.isdigit():
        raise KeyError(f"{inner}: no row number")
    return int(head)


def _image_cell(value: object, container: Path, inner: str) -> bytes:
    """The bytes of a row's image, once the row is known to hold the image the path names."""
    row, name = _row(inner), inner.split("/", 1)[-1]
    own = Path(value.get("path") or "image").name if isinstance(value, dict) else "image"
    if own != name:
        raise KeyError(f"row {row} of {container} holds {own}, not {name}")
    data = value.get("bytes") if isinstance(value, dict) else value
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise KeyError(f"row {row} of {container} holds no image bytes")


def image_column(schema) -> str | None:
    """The first column that stores images as Hugging Face's Image feature does: a struct with bytes."""
    import pyarrow as pa

    for field in schema:
        if pa.types.is_struct(field.type) and any(
            pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in field.type if f.name == "bytes"
        ):
            return field.name
    return None


def _read_parquet(container: Path, inner: str) -> bytes:
    import pyarrow.parquet as pq

    row = _row(inner)
    with _lock:
        if container not in _tables:
            _tables[container] = (pq.ParquetFile(container), None)
        reader, last = _tables[container]
        column = image_column(reader.schema_arrow)
        start = 0
        for group in range(reader.metadata.num_row_groups):
            count = reader.metadata.row_group(group).num_rows
            if row < start + count:
                break
            start += count
        else:
            raise KeyError(f"{container} has no row {row}")
        if last is None or last[0] != group:  # rows are read in order: one row group at a time
            last = (group, reader.read_row_group(group, columns=[column]).column(0))
            _tables[container] = (reader, last)
        return _image_cell(last[1][row - start].as_py(), container, inner)


def _read_arrow(container: Path, inner: str) -> bytes:
    import pyarrow as pa

    row = _row(inner)
    with _lock:
        if container not in _tables:  # save_to_disk's files are arrow streams; memory-mapped, read lazily
            table = pa.ipc.open_stream(pa.memory_map(str(container))).read_all()
            _tables[container] = (table, image_column(table.schema))
        table, column = _tables[container]
    if row >= table.num_rows:
        raise KeyError(f"{container} has no row {row}")
    return _image_cell(table.column(column)[row].as_py(), container, inner)


_READERS: dict[str, Callable[[Path, str], bytes]] = {
    ".tar": _read_tar,
    ".parquet": _read_parquet,
    ".arrow": _read_arrow,
}
