"""Backbone features computed once: the pretrained recipe's pooled features of each image (and of its
mirror image) kept on disk, keyed by the image's bytes, the backbone's weights, the input size, the view,
the decoder's version and the pass's signature (runtime, versions, processor, threads, batch shape:
engine.backbone), so that a second run on the same images (another seed, a calibration split, a time
budget) runs no backbone pass for them, and takes the very features it would have computed.

One .npy file per image and view under CACHE/features/, each written as soon as its batch is computed,
to a temporary name and renamed (two runs at once never see half a file; a run killed halfway keeps
what it computed); a file that does not load as the expected vector is computed again, never trusted.
Move or delete the folder freely: it only holds what can be recomputed."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from .data.containers import content_digest
from .data.sources import CACHE_VERSION, Source, default_cache_dir

FEATURES_DIR = "features"


def weights_digest(module: torch.nn.Module) -> str:
    """A hash of a network's weights (every tensor of its state, in order): the cache's backbone key."""
    digest = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Features by (image bytes, backbone weights, size, pass signature, view) in cache_dir/features."""

    def __init__(self, cache_dir: Path | None, backbone: torch.nn.Module, size: int, signature: str) -> None:
        self.root = Path(cache_dir or default_cache_dir()) / FEATURES_DIR
        # The signature is part of the key: another runtime, thread count or processor moves the features'
        # last bits, and a run gives the same numbers whether its features were computed or loaded.
        self.prefix = f"{weights_digest(backbone)}|{size}|v{CACHE_VERSION}|{signature}"
        self.hits = self.computed = 0

    def cached(self, paths: list[Path], views: tuple[bool, ...]) -> set[int]:
        """Indices of paths whose features of every view (False: the image, True: its mirror) the cache
        holds: images that decoded before and will likely need no backbone pass (an entry found damaged
        later is computed again, from pixels decoded then)."""
        return {i for i, p in enumerate(paths) if all(self._entry(content_digest(p), flip).is_file() for flip in views)}

    def _entry(self, digest: str, flip: bool) -> Path:
        key = hashlib.sha1(f"{self.prefix}|{digest}|{'mirror' if flip else 'image'}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}.npy"

    def features(
        self,
        paths: list[Path],
        source: Source,
        flip: bool,
        compute: Callable[[Source], Iterable[torch.Tensor]],
        stored: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """(N, F) features of source's images (paths: their files, in the same order): cached ones loaded,
        the others computed by compute(sub-source), which yields them batch by batch in order, each batch
        stored as it comes (then stored() is called)."""
        entries = [self._entry(content_digest(p), flip) for p in paths]
        loaded: list[np.ndarray | None] = [_load(e) for e in entries]
        missing = [i for i, found in enumerate(loaded) if found is None]
        done = 0
        if missing:
            for batch in compute(source if len(missing) == len(paths) else _Subset(source, missing)):
                for vector in batch.cpu().numpy():
                    loaded[missing[done]] = vector
                    _store(entries[missing[done]], vector)
                    done += 1
                if stored is not None:
                    stored()
        if done != len(missing):
            raise RuntimeError(f"feature cache {self.root}: {done} features computed for {len(missing)} images")
        dims = {v.shape for v in loaded}
        if len(dims) > 1:  # entries of another backbone cannot share a key; a damaged one would be caught by _load
            raise RuntimeError(f"feature cache {self.root}: vectors of several sizes for one backbone")
        self.hits += len(paths) - len(missing)
        self.computed += len(missing)
        return torch.from_numpy(np.stack(loaded)) if loaded else torch.empty(0)


def _load(entry: Path) -> np.ndarray | None:
    try:
        vector = np.load(entry, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # absent, truncated or not an array: computed again
    return vector if vector.ndim == 1 and vector.dtype == np.float32 and np.isfinite(vector).all() else None


def _store(entry: Path, vector: np.ndarray) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with tmp.open("wb") as f:
            np.save(f, np.ascontiguousarray(vector, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, entry)
    except OSError:
        pass  # a full or read-only cache folder costs the next run a backbone pass, not this run


class _Subset:
    """Items `indices` of a source, as a source."""

    def __init__(self, source: Source, indices: list[int]) -> None:
        self.source, self.indices = source, torch.tensor(indices, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, idx: torch.Tensor | slice) -> torch.Tensor:
        return self.source.batch(self.indices[idx])
