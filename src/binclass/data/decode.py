"""Decode image files once into uint8 arrays: EXIF orientation, RGB, square resize; in parallel."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import BinclassError

# Transparent pixels are composited on white so that RGBA/LA/palette images do not turn black.
BACKGROUND = (255, 255, 255)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grey: scale the full range to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, BACKGROUND + (255,))
        img = Image.alpha_composite(canvas, img)
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_image(path: Path, size: int) -> np.ndarray:
    """One file as a (size, size, 3) uint8 array. Raises BinclassError naming the file if it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF/ICC chatter; real failures raise below
            with Image.open(path) as img:
                # JPEG draft mode decodes at a reduced DCT scale that is still >= size: several times faster.
                img.draft("RGB", (size, size))
                img = ImageOps.exif_transpose(img)
                img = _to_rgb(img)
                img = img.resize((size, size), Image.Resampling.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
    except BinclassError:
        raise
    except Image.DecompressionBombError as exc:
        raise BinclassError(f"{path}: image too large to decode safely ({exc}); shrink or remove it") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BinclassError(f"{path}: cannot decode image ({exc}); remove or replace the file") from None


def default_workers(workers: int = 0) -> int:
    return workers if workers > 0 else (os.cpu_count() or 1)


def decode_many(paths: list[Path], size: int, workers: int = 0) -> torch.Tensor:
    """All files as one (N, 3, size, size) uint8 tensor. Pillow releases the GIL while decoding, so threads scale."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = decode_image(paths[i], size)

    if len(paths) > 1 and default_workers(workers) > 1:
        with ThreadPoolExecutor(default_workers(workers)) as pool:
            list(pool.map(work, range(len(paths))))
    else:
        for i in range(len(paths)):
            work(i)
    # An NCHW view of the HWC buffer: channels_last memory, no second copy of the whole set.
    return torch.from_numpy(out).permute(0, 3, 1, 2)
