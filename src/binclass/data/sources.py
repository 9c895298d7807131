"""Where decoded images live during training: in memory (default), in an on-disk cache that a second
run reuses, or nowhere (streamed: decoded batch by batch, for sets larger than memory).
All three go through decode_image, so they give the same pixels and the same metrics."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..progressbar import Progress, counted
from .containers import member_digest
from .decode import ImageProblem, decode_arrays, decode_checked, decode_image, decode_many
from .health import hashing_decoder

CACHE_MODES = ("memory", "disk", "none")
CACHE_VERSION = 1  # bump when decode_image changes what it produces


def default_cache_dir() -> Path:
    base = os.environ.get("BINCLASS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "binclass"
    )
    return Path(base)


def file_key(path: Path, size: int) -> str:
    """Changes when the file's path, byte size, modification time or the decode size change; for an image
    inside a shard, when its bytes do."""
    digest = member_digest(path)
    if digest is not None:
        raw = f"member|{digest}|{size}|v{CACHE_VERSION}"
    else:
        st = os.stat(path)
        raw = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{size}|v{CACHE_VERSION}"
    return hashlib.sha1(raw.encode()).hexdigest()


def _entry(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.npy"


def decode_cached(
    paths: list[Path],
    size: int,
    cache_dir: Path,
    workers: int = 0,
    tick: Callable[[], None] | None = None,
    decode: Callable[[Path], np.ndarray] | None = None,
) -> tuple[torch.Tensor, list[int], list[ImageProblem], int]:
    """Like decode_checked, reading what the cache holds and decoding (then storing) the rest.
    Also returns the number of cache hits. Bad files are never cached: they are reported every run."""
    hits = [False] * len(paths)

    def load_or_decode(i: int) -> np.ndarray:
        try:  # in the worker thread: the stat is I/O too, and a file gone since the scan is a bad file
            entry = _entry(cache_dir, file_key(paths[i], size))
        except (OSError, KeyError) as exc:
            raise ImageProblem(paths[i], "unreadable", getattr(exc, "strerror", None) or str(exc)) from None
        if entry.exists():
            try:
                arr = np.load(entry, allow_pickle=False)
                if arr.shape == (size, size, 3) and arr.dtype == np.uint8:
                    hits[i] = True
                    return arr
            except (OSError, ValueError):
                pass  # a damaged entry is simply decoded again
        arr = decode(paths[i]) if decode is not None else decode_image(paths[i], size)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with tmp.open("wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, entry)
        return arr

    images, good, problems = decode_checked(paths, size, workers, load_or_decode, tick)
    return images, good, problems, sum(hits)


def check_files(
    paths: list[Path], size: int, workers: int = 0, chunk: int = 512
) -> tuple[list[int], list[ImageProblem]]:
    """Fully decode every file (in chunks, keeping no pixels): indices of the good ones, and the problems."""
    good: list[int] = []
    problems: list[ImageProblem] = []
    for start in range(0, len(paths), chunk):
        _, ok, bad = decode_checked(paths[start : start + chunk], size, workers)
        good += [start + i for i in ok]
        problems += bad
    return good, problems


class Source(Protocol):
    """Images (or features) by index: len() of them, and a batch as a tensor on the training device."""

    def __len__(self) -> int: ...
    def batch(self, idx: torch.Tensor | slice) -> torch.Tensor: ...


class TensorSource:
    """Every image decoded once, held as one uint8 tensor on the training device."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, idx: torch.Tensor | slice) -> torch.Tensor:
        if isinstance(idx, torch.Tensor):
            idx = idx.to(self.images.device)
        return self.images[idx]


class StreamSource:
    """Decodes each batch when asked: memory stays bounded by the batch, whatever the set's size."""

    def __init__(self, paths: list[Path], size: int, device: torch.device, workers: int = 0) -> None:
        self.paths, self.size, self.device, self.workers = paths, size, device, workers

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, idx: torch.Tensor | slice) -> torch.Tensor:
        chosen = self.paths[idx] if isinstance(idx, slice) else [self.paths[i] for i in idx.tolist()]
        return decode_many(chosen, self.size, self.workers).to(self.device, non_blocking=True)


# Decoded images stay in memory while they take at most this share of the memory available when the run
# starts, and at most MEMORY_CAP bytes; beyond either they go to a file (FileImages), read back per batch
# from the OS's page cache at memory speed. 100,000 images at 224 px are 15 GB; 30,000 (4.5 GB) held in
# memory took a default run to a 7.2 GB peak on a 24 GB machine, where a file keeps it near 3 GB;
# --model small's 80 px images of 100,000 photos (1.9 GB) stay in memory.
MEMORY_SHARE = 0.25
MEMORY_CAP = 3 * 10**9


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def images_fit(n_images: int, size: int, available: int | None) -> bool:
    """Whether n decoded images of size x size go in memory (MEMORY_SHARE of what is available, MEMORY_CAP)."""
    limit = MEMORY_CAP if available is None else min(MEMORY_CAP, MEMORY_SHARE * available)
    return n_images * size * size * 3 <= limit


class FileImages:
    """Decoded images in one file of N x size x size x 3 bytes, written as they are decoded (from several
    threads) and read back per batch with positioned reads: the run holds a batch, however many images
    there are, and the OS's page cache keeps whatever of the file fits in free memory. Not memory-mapped:
    mapped pages count as the process's own memory while they are resident. The file is unlinked as soon as
    it is open, so it disappears when the run ends, however it ends."""

    def __init__(self, folder: Path, n: int, size: int, device: torch.device) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"decoded-{os.getpid()}-{threading.get_ident()}-{id(self)}.u8"
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.unlink(path)
        self.size, self.device, self.item = size, device, size * size * 3
        os.ftruncate(self.fd, n * self.item)
        self.rows = torch.arange(n)

    def __setitem__(self, i: int, pixels: np.ndarray) -> None:
        data = np.ascontiguousarray(pixels, dtype=np.uint8)
        if os.pwrite(self.fd, memoryview(data).cast("B"), i * self.item) != self.item:
            raise OSError(f"short write to the decoded-image file (image {i}); is the cache folder's disk full?")

    def keep(self, good: list[int]) -> FileImages:
        """Only the good images, in this order, from now on."""
        self.rows = torch.tensor(good, dtype=torch.long)
        return self

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx: torch.Tensor | slice) -> torch.Tensor:
        rows = self.rows[idx if isinstance(idx, slice) else idx.cpu()].tolist()
        out = np.empty((len(rows), self.size, self.size, 3), dtype=np.uint8)
        k = 0
        while k < len(rows):  # one read per run of consecutive rows
            j = k + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            view, offset = memoryview(out[k:j]).cast("B"), rows[k] * self.item
            while len(view):
                got = os.preadv(self.fd, [view], offset)
                if got <= 0:
                    raise OSError("the decoded-image file ended early")
                view, offset = view[got:], offset + got
            k = j
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(self.device)

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.fd)


class PartialSource:
    """Some images decoded and held (in memory or a FileImages), the others decoded when a batch asks for
    them: a pretrained run whose backbone features are cached never asks for them."""

    def __init__(
        self, paths: list[Path], size: int, device: torch.device, images: Source, held: list[int], workers: int
    ) -> None:
        self.paths, self.size, self.device, self.images, self.workers = paths, size, device, images, workers
        self.slot = torch.full((len(paths),), -1, dtype=torch.long)
        self.slot[torch.tensor(held, dtype=torch.long)] = torch.arange(len(held))

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, idx: torch.Tensor | slice) -> torch.Tensor:
        idx = torch.arange(len(self))[idx] if isinstance(idx, slice) else idx.cpu()
        slots = self.slot[idx]
        out = torch.empty((len(idx), 3, self.size, self.size), dtype=torch.uint8, device=self.device)
        have = slots >= 0
        if have.any():
            out[have.to(self.device)] = self.images.batch(slots[have])
        if not have.all():
            asked = idx[~have].tolist()
            out[(~have).to(self.device)] = decode_many([self.paths[i] for i in asked], self.size, self.workers).to(
                self.device
            )
        return out


def _into_file(
    paths: list[Path],
    size: int,
    device: torch.device,
    workers: int,
    cache_dir: Path | None,
    progress: Progress | None,
    load: Callable[[int], np.ndarray] | None = None,
) -> tuple[FileImages, list[int], list[ImageProblem]]:
    images = FileImages((cache_dir or default_cache_dir()) / "decoded", len(paths), size, device)
    _, good, problems = decode_arrays(paths, size, workers, load, counted(len(paths), progress), into=images)
    return images.keep(good), good, problems


def _partial(
    paths: list[Path],
    size: int,
    device: torch.device,
    workers: int,
    known_good: set[int],
    rest: list[int],
    held: Source,
    ok: list[int],
    problems: list[ImageProblem],
    where: str = "",
) -> tuple[PartialSource, list[int], list[ImageProblem], str]:
    """make_source's answer when the images in known_good stay encoded and those of rest were decoded
    (held: the good ones of rest, ok: their indices in rest)."""
    bad = set(rest) - {rest[i] for i in ok}
    good = [i for i in range(len(paths)) if i not in bad]
    position = {index: k for k, index in enumerate(good)}
    slots = [position[rest[i]] for i in ok]
    source = PartialSource([paths[i] for i in good], size, device, held, slots, workers)
    decoded = f"{len(ok)} decoded{' ' + where if where else ''}"
    return source, good, problems, f"{decoded}, {len(known_good)} left encoded (features cached)"


class SliceSource:
    """Items [start, stop) of a source, as a source of their own."""

    def __init__(self, source: Source, start: int, stop: int) -> None:
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def batch(self, idx: torch.Tensor | slice) -> torch.Tensor:
        if isinstance(idx, slice):
            a, b, _ = idx.indices(len(self))
            return self.source.batch(slice(self.start + a, self.start + b))
        return self.source.batch(idx + self.start)


def make_source(
    paths: list[Path],
    size: int,
    mode: str,
    device: torch.device,
    workers: int = 0,
    cache_dir: Path | None = None,
    known_good: set[int] = frozenset(),
    progress: Progress | None = None,
    hashes_to: Path | None = None,
) -> tuple[Source, list[int], list[ImageProblem], str]:
    """The image source for a split (good files only), the indices of the good files among `paths`,
    the problems of the bad ones, and a line saying what was done. known_good: indices of images that are
    known to decode and whose pixels the run will likely not need (their backbone features are cached):
    not decoded now, decoded if a batch asks for them. progress: told of every decoded file. hashes_to: a
    cache folder that receives the duplicate search's hashes of the pictures decoded at their own size."""
    decode = hashing_decoder(size, hashes_to) if hashes_to is not None else None

    def loader(chosen: list[Path]) -> Callable[[int], np.ndarray] | None:
        return None if decode is None else lambda i: decode(chosen[i])

    if mode == "file":
        if known_good:
            rest = [i for i in range(len(paths)) if i not in known_good]
            chosen = [paths[i] for i in rest]
            held, ok, problems = _into_file(chosen, size, device, workers, cache_dir, progress, loader(chosen))
            return _partial(paths, size, device, workers, known_good, rest, held, ok, problems, "to a file")
        images, good, problems = _into_file(paths, size, device, workers, cache_dir, progress, loader(paths))
        return images, good, problems, "decoded to a file, read back per batch"
    if known_good and mode != "none":
        rest = [i for i in range(len(paths)) if i not in known_good]
        chosen = [paths[i] for i in rest]
        pixels, ok, problems = decode_checked(chosen, size, workers, loader(chosen), counted(len(rest), progress))
        return _partial(paths, size, device, workers, known_good, rest, TensorSource(pixels.to(device)), ok, problems)
    if mode == "none":
        good, problems = check_files(paths, size, workers)
        return (
            StreamSource([paths[i] for i in good], size, device, workers),
            good,
            problems,
            "checked, streamed per batch",
        )
    if mode == "disk":
        tick = counted(len(paths), progress)
        images, good, problems, hits = decode_cached(
            paths, size, cache_dir or default_cache_dir(), workers, tick, decode
        )
        return (
            TensorSource(images.to(device)),
            good,
            problems,
            f"{hits} from the disk cache, {len(good) - hits} decoded",
        )
    images, good, problems = decode_checked(paths, size, workers, loader(paths), counted(len(paths), progress))
    return TensorSource(images.to(device)), good, problems, "decoded"
