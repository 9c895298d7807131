"""How decoding the data set scales with threads, against worker processes, on the machine that runs it: a table.
binclass decodes in threads; Pillow holds the GIL between its decode and resize calls, so threads
stop scaling somewhere. Processes do not share a GIL but pay start-up. scripts/device_checks.sh runs it on a GPU
machine's cores; docs/benchmarks.md has the 2-core figures.
    python scripts/decode_scaling.py DATA_DIR [--size 150] [--repeats 2]"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import torch  # imported before decoding, as in binclass (a forked worker inherits it)

from binclass.data.decode import decode_checked, decode_image
from binclass.data.scan import scan_dataset

_PATHS: list[Path] = []


def _worker(args: tuple[str, int, int, int, int]) -> None:
    name, n, size, first, stride = args
    shm = shared_memory.SharedMemory(name=name)
    out = np.ndarray((n, size, size, 3), np.uint8, buffer=shm.buf)
    for i in range(first, n, stride):
        out[i] = decode_image(_PATHS[i], size)
    del out
    shm.close()


def decode_processes(paths: list[Path], size: int, workers: int) -> np.ndarray:
    """Forked workers write straight into one shared buffer (no pickled arrays)."""
    global _PATHS
    _PATHS = paths
    n = len(paths)
    shm = shared_memory.SharedMemory(create=True, size=n * size * size * 3)
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            pool.map(_worker, [(shm.name, n, size, k, workers) for k in range(workers)])
        return np.ndarray((n, size, size, 3), np.uint8, buffer=shm.buf).copy()
    finally:
        shm.close()
        shm.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    layout = scan_dataset(args.data_dir)
    paths = list(layout.train.paths) + list(layout.val.paths)
    cores = os.cpu_count() or 1
    counts = sorted({1, 2, 4, 8, cores} & set(range(1, cores + 1)))
    reference = None
    rows = []
    for rep in range(args.repeats):  # alternating, so that drift on a shared machine hits every row
        for kind, w in [("threads", w) for w in counts] + [("processes", cores)]:
            t0 = time.perf_counter()
            if kind == "threads":
                images = decode_checked(paths, args.size, w)[0].permute(0, 2, 3, 1).numpy()
            else:
                images = decode_processes(paths, args.size, w)
            seconds = time.perf_counter() - t0
            if reference is None:
                reference = images
            assert np.array_equal(images, reference), f"{kind} x{w} decoded different pixels"
            rows.append((rep, kind, w, seconds))
    print(f"decoding {len(paths)} images to {args.size} px on {cores} cores, torch {torch.__version__}")
    print(
        f"{'':10} {'workers':>7} "
        + " ".join(f"{'run ' + str(r + 1):>8}" for r in range(args.repeats))
        + f" {'best':>7} {'img/s':>7}"
    )
    base = min(s for _, k, w, s in rows if k == "threads" and w == 1)
    for kind, w in [("threads", w) for w in counts] + [("processes", cores)]:
        times = [s for _, k, ww, s in rows if k == kind and ww == w]
        best = min(times)
        print(
            f"{kind:10} {w:>7} "
            + " ".join(f"{t:8.2f}" for t in times)
            + f" {best:7.2f} {len(paths) / best:7.0f}  {base / best:.2f}x one thread"
        )


if __name__ == "__main__":
    main()
