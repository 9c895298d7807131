"""Where decoded images live during training: in memory (default), in an on-disk cache that a second
run reuses, or nowhere (streamed: decoded batch by batch, for sets larger than memory).
All three go through decode_image, so they give the same pixels and the same metrics."""

from __future__ import annotations

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
from .decode import ImageProblem, decode_checked, decode_image, decode_many

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
    paths: list[Path], size: int, cache_dir: Path, workers: int = 0, tick: Callable[[], None] | None = None
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
        arr = decode_image(paths[i], size)
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


class PartialSource:
    """Some images decoded and held (uint8, on the device), the others decoded when a batch asks for them:
    a pretrained run whose backbone features are cached never asks for them."""

    def __init__(
        self, paths: list[Path], size: int, device: torch.device, images: torch.Tensor, held: list[int], workers: int
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
            out[have.to(self.device)] = self.images[slots[have].to(self.images.device)]
        if not have.all():
            asked = idx[~have].tolist()
            out[(~have).to(self.device)] = decode_many([self.paths[i] for i in asked], self.size, self.workers).to(
                self.device
            )
        return out


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
) -> tuple[Source, list[int], list[ImageProblem], str]:
    """The image source for a split (good files only), the indices of the good files among `paths`,
    the problems of the bad ones, and a line saying what was done. known_good: indices of images that are
    known to decode and whose pixels the run will likely not need (their backbone features are cached):
    not decoded now, decoded if a batch asks for them. progress: told of every decoded file."""
    if known_good and mode != "none":
        rest = [i for i in range(len(paths)) if i not in known_good]
        images, ok, problems = decode_checked(
            [paths[i] for i in rest], size, workers, tick=counted(len(rest), progress)
        )
        bad = {rest[i] for i in range(len(rest))} - {rest[i] for i in ok}
        good = [i for i in range(len(paths)) if i not in bad]
        position = {index: k for k, index in enumerate(good)}
        held = [position[rest[i]] for i in ok]
        source = PartialSource([paths[i] for i in good], size, device, images.to(device), held, workers)
        return source, good, problems, f"{len(ok)} decoded, {len(known_good)} left encoded (features cached)"
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
        images, good, problems, hits = decode_cached(paths, size, cache_dir or default_cache_dir(), workers, tick)
        return (
            TensorSource(images.to(device)),
            good,
            problems,
            f"{hits} from the disk cache, {len(good) - hits} decoded",
        )
    images, good, problems = decode_checked(paths, size, workers, tick=counted(len(paths), progress))
    return TensorSource(images.to(device)), good, problems, "decoded"
