"""A two-class image set of any size for scale runs: photo-sized JPEGs (240-400 x 180-320 px) of
multi-scale coloured texture with one textured shape each, an ellipse ("ellipses") or a rectangle
("boxes"), of random size, place and colour. Image i is the same whatever the set's size (seeded by its
index), so the smaller sets are the first images of the larger one, hard-linked, not written again.

    python scripts/make_scale.py OUT --sizes 10000,30000,100000 [--val-share 0.2] [--workers 2]

OUT/nN/{train,validation}/{ellipses,boxes}/NNNNNNN.jpg for each N (training and validation images
together), the validation share taken from each class."""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("ellipses", "boxes")


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Coloured noise summed over four scales (coarse blobs to grain), float in about 0-255."""
    out = np.zeros((h, w, 3))
    for cells, weight in ((3, 60.0), (8, 35.0), (24, 20.0), (80, 10.0)):
        grid = rng.normal(0, 1, (cells, max(2, cells * w // h), 3))
        up = Image.fromarray(((grid + 4) * 30).clip(0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        out += (np.asarray(up, dtype=np.float64) / 30 - 4) * weight
    return out + rng.uniform(60, 190, 3)


def draw(index: int, seed: int) -> tuple[int, Image.Image]:
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(0, 2))
    w, h = int(rng.integers(240, 401)), int(rng.integers(180, 321))
    img = Image.fromarray(texture(rng, h, w).clip(0, 255).astype(np.uint8))
    side = rng.uniform(0.25, 0.6) * min(w, h)
    x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
    box = (int(x0), int(y0), int(x0 + side * rng.uniform(0.8, 1.4)), int(y0 + side * rng.uniform(0.8, 1.2)))
    mask = Image.new("L", (w, h), 0)
    (ImageDraw.Draw(mask).ellipse if label == 0 else ImageDraw.Draw(mask).rectangle)(box, fill=255)
    fill = Image.fromarray(texture(rng, h, w).clip(0, 255).astype(np.uint8))
    img.paste(fill, (0, 0), mask)
    return label, img


def write(args: tuple[int, int, Path, float]) -> None:
    index, seed, root, val_share = args
    label, img = draw(index, seed)
    split = "validation" if (index * 2654435761 % 2**32) / 2**32 < val_share else "train"
    path = root / split / CLASSES[label] / f"{index:07d}.jpg"
    if not path.exists():
        img.save(path, quality=88)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--val-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = parser.parse_args()
    sizes = sorted(int(s) for s in a.sizes.split(","))
    largest = a.out / f"n{sizes[-1]}"
    for split in ("train", "validation"):
        for name in CLASSES:
            (largest / split / name).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = [(i, a.seed, largest, a.val_share) for i in range(sizes[-1])]
    with ProcessPoolExecutor(a.workers) as pool:
        list(pool.map(write, jobs, chunksize=256))
    print(f"{sizes[-1]} images in {largest} in {time.perf_counter() - start:.0f}s")
    for n in sizes[:-1]:
        for path in sorted(largest.rglob("*.jpg")):
            if int(path.stem) < n:
                target = a.out / f"n{n}" / path.relative_to(largest)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    os.link(path, target)
        print(f"{n} images in {a.out / f'n{n}'} (hard links)")


if __name__ == "__main__":
    main()
