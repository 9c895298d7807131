"""A small, seeded, procedurally drawn two-class image set for the demo and the tests (no downloads).

Class "circles" holds images with a filled ellipse, class "squares" a filled rectangle; colors,
sizes, positions, background gradients, clutter lines and pixel noise vary, so the task is easy
but not trivial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circles", "squares")


def draw_image(rng: np.random.Generator, cls: int, size: int, easy: bool = False) -> Image.Image:
    """easy: plain dark background, a large bright shape, no clutter, little noise (learnable in seconds)."""
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if easy:
        top = bottom = rng.integers(0, 60, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    bg = (top * (1 - t) + bottom * t) * np.ones((1, size, 1))
    img = Image.fromarray(bg.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(0 if easy else rng.integers(1, 4)):  # clutter lines shared by both classes
        xy = tuple(int(v) for v in rng.integers(0, size, 4))
        draw.line(xy, fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=max(1, size // 40))
    side = rng.uniform(0.6, 0.8) * size if easy else rng.uniform(0.3, 0.6) * size
    x0, y0 = rng.uniform(0, size - side, 2)
    box = (int(x0), int(y0), int(x0 + side), int(y0 + side * rng.uniform(0.8, 1.2)))
    color = tuple(int(c) for c in rng.integers(150 if easy else 0, 256, 3))
    (draw.ellipse if cls == 0 else draw.rectangle)(box, fill=color)
    noisy = np.asarray(img, dtype=np.float64) + rng.normal(0, 4 if easy else 12, (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def make_dataset(
    root: Path,
    n_train: int = 60,
    n_val: int = 20,
    size: int = 48,
    seed: int = 0,
    fmt: str = "png",
    easy: bool = False,
) -> Path:
    """root/train/{circles,squares} and root/validation/{...}, n_train and n_val images per class."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in (("train", n_train), ("validation", n_val)):
        for cls, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                draw_image(rng, cls, size, easy).save(folder / f"{name}_{i:04d}.{fmt}")
    return root
