"""How the near-duplicate search grows with the number of images: the perceptual hashes of DATA's images
(decoded and hashed once, timed), repeated with random bit flips (FLIPS bits each, beyond the search's
reach, so the copies stay as spread as real pictures) up to each size, and the banded search timed on each.

    python scripts/duplicate_scaling.py DATA [--sizes 3000,10000,30000,100000] [--repeats 3]"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from binclass.data.health import NEAR_BITS, check_health, image_hashes, near_pairs
from binclass.data.scan import scan_dataset

FLIPS = 12


def _decode(path: Path) -> None:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        ImageOps.exif_transpose(im).convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--sizes", default="3000,10000,30000,100000")
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    layout = scan_dataset(a.data)
    paths = layout.train.paths + layout.val.paths
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(_decode, paths))
    decoding = time.perf_counter() - started
    started = time.perf_counter()
    hashes, mirrors, _ = image_hashes(paths, workers=2)
    hashing = time.perf_counter() - started
    started = time.perf_counter()
    health = check_health(layout, workers=2)
    whole = time.perf_counter() - started
    print(f"{len(paths)} images, 2 threads: decoding alone {decoding:.1f} s; decoding and hashing {hashing:.1f} s; ")
    print(f"the whole check (hashing, search, thumbnail confirmation): {whole:.1f} s, {len(health.pairs)} pairs")
    rng = np.random.default_rng(0)
    print("| images | search seconds, median (each) | pairs found |")
    print("| --- | --- | --- |")
    for size in (int(s) for s in a.sizes.split(",")):
        reps = -(-size // len(hashes))
        h, m = [hashes], [mirrors]
        for _ in range(reps - 1):
            flips = np.zeros(len(hashes), dtype=np.uint64)
            for _ in range(FLIPS):
                flips |= np.uint64(1) << rng.integers(0, 64, len(hashes)).astype(np.uint64)
            h.append(hashes ^ flips)
            m.append(mirrors ^ flips)
        h_all, m_all = np.concatenate(h)[:size], np.concatenate(m)[:size]
        times, found = [], 0
        for _ in range(a.repeats):
            t = time.perf_counter()
            found = len(near_pairs(h_all, m_all, NEAR_BITS))
            times.append(time.perf_counter() - t)
        each = ", ".join(f"{x:.2f}" for x in times)
        print(f"| {size} | {statistics.median(times):.2f} ({each}) | {found} |", flush=True)


if __name__ == "__main__":
    main()
