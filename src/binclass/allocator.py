"""Keep freed memory in the process between training steps; hand it back once per epoch.

glibc's malloc serves each request above its mmap threshold (at most 32 MiB) with a fresh mmap and
unmaps it on free, and trims the top of its heap as soon as enough of it is free. A CPU training step
allocates and frees the same large tensors every time (the seed network's activations, its 9.5M-weight
fc1's bf16 copy and fp32 gradient), so every step paid for page faults that zero-fill those pages
again: keeping freed memory halved the seed network's CPU epoch (docs/benchmarks.md, "Speed on the CPU").

Kept memory has a cost: freed blocks between live ones add up over the epochs. `release_free_memory`
(malloc_trim) before each epoch hands the free pages back, at the price of one step's page faults per
epoch. One arena for all threads: with an arena per thread (oneDNN's, the decoders'), each holding its
own untrimmed free blocks, the peak of identical runs varied by hundreds of MB."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER = 2**31 - 1  # the largest int mallopt takes: no automatic trimming

_OPTIONS = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER), (_M_ARENA_MAX, 1))

_libc: ctypes.CDLL | None = None
_kept: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (musl and others have no such options), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


def keep_freed_memory() -> bool:
    """From now on in this process, serve large allocations from the heap (no per-tensor mmap) and do
    not trim it automatically. True if set (now or earlier), False where there is nothing to set."""
    global _libc, _kept
    if _kept is None:
        _libc = _glibc()
        _kept = _libc is not None and all(_libc.mallopt(option, value) == 1 for option, value in _OPTIONS)
    return _kept


def release_free_memory() -> None:
    """Return the free pages of the heap to the system (after keep_freed_memory; once per epoch)."""
    if _kept and _libc is not None:
        _libc.malloc_trim(0)
