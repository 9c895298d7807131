"""Decode image files once into uint8 arrays: EXIF orientation, RGB, square resize; in parallel."""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BinclassError
from .containers import member_bytes

if TYPE_CHECKING:  # decode_image and decode_arrays run without PyTorch (the ONNX predict path)
    import torch

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


class ImageProblem(BinclassError):
    """A file that cannot be used as an image; `kind` is one of PROBLEM_KINDS."""

    def __init__(self, path: Path, kind: str, detail: str) -> None:
        super().__init__(f"{path}: {kind} ({detail}); remove or replace the file")
        self.path, self.kind, self.detail = Path(path), kind, detail


PROBLEM_KINDS = ("truncated", "not an image", "decompression bomb", "unreadable", "corrupt")


def decode_image(path: Path, size: int) -> np.ndarray:
    """One file as a (size, size, 3) uint8 array, fully decoded (a truncated file fails here, not later).
    Raises ImageProblem naming the file and what is wrong with it."""
    return resized(open_rgb(path, draft=size), size)


def resized(img: Image.Image, size: int) -> np.ndarray:
    """A decoded picture as the (size, size, 3) uint8 array training sees."""
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def decoded_picture(data: bytes, name: Path, draft: int) -> tuple[Image.Image, bool]:
    """A file's bytes decoded as open_rgb decodes them, and whether the picture came out as a decode without
    draft mode gives it (JPEG's draft mode changed neither its size nor its colour decoding)."""
    reduced: list[bool] = []
    return _decoded(io.BytesIO(data), name, draft, reduced), not reduced[0]


def open_rgb(path: Path, draft: int | None = None) -> Image.Image:
    """One file as a fully decoded RGB image at its own size (EXIF orientation applied, 16-bit and
    transparent images handled); path may name an image inside a shard (data.containers). draft: JPEG's draft
    mode decodes at a reduced DCT scale that is still at least this size, several times faster. Raises
    ImageProblem naming the file and what is wrong with it."""
    try:
        data = member_bytes(path)
    except (OSError, KeyError, ValueError) as exc:  # a container that cannot be read, or lacks the member
        raise ImageProblem(path, "unreadable", str(exc).strip("'\"")) from None
    return _decoded(path if data is None else io.BytesIO(data), Path(path), draft)


def decode_bytes(data: bytes, size: int, name: str = "upload") -> np.ndarray:
    """An image's bytes (an upload) as decode_image decodes a file: the same pixels for the same bytes.
    name: what a problem is reported under."""
    img = _decoded(io.BytesIO(data), Path(name), draft=size)
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def _decoded(
    source: Path | io.BytesIO, name: Path, draft: int | None, reduced: list[bool] | None = None
) -> Image.Image:
    """reduced: receives whether draft mode decoded the picture below its own size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF/ICC chatter; real failures raise below
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over Pillow's pixel limit: refuse
            with Image.open(source) as img:
                own = (img.size, img.mode)
                if draft is not None:
                    img.draft("RGB", (draft, draft))
                if reduced is not None:  # a smaller picture, or the decoder's own colour conversion
                    reduced.append((img.size, img.mode) != own)
                img = ImageOps.exif_transpose(img)
                img = _to_rgb(img)
                img.load()
                return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem(name, "decompression bomb", str(exc).split(".")[0]) from None
    except UnidentifiedImageError:
        raise ImageProblem(name, "not an image", "no image format recognizes its bytes") from None
    except (PermissionError, FileNotFoundError, IsADirectoryError) as exc:
        raise ImageProblem(name, "unreadable", exc.strerror or str(exc)) from None
    except (OSError, ValueError, SyntaxError, struct.error, EOFError) as exc:
        kind = "truncated" if "truncated" in str(exc).lower() or isinstance(exc, EOFError) else "corrupt"
        raise ImageProblem(name, kind, str(exc) or type(exc).__name__) from None


def default_workers(workers: int = 0) -> int:
    return workers if workers > 0 else (os.cpu_count() or 1)


def decode_checked(
    paths: list[Path],
    size: int,
    workers: int = 0,
    load: Callable[[int], np.ndarray] | None = None,
    tick: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, list[int], list[ImageProblem]]:
    """Decode every file in parallel threads (Pillow releases the GIL while decoding).
    Returns (N_good, 3, size, size) uint8, the indices of the good files, and one problem per bad file.
    tick: called after each file (progress)."""
    import torch

    out, good, problems = decode_arrays(paths, size, workers, load, tick)
    # An NCHW view of the HWC buffer: channels_last memory, no second copy of the whole set.
    return torch.from_numpy(out).permute(0, 3, 1, 2), good, problems


def decode_arrays(
    paths: list[Path],
    size: int,
    workers: int = 0,
    load: Callable[[int], np.ndarray] | None = None,
    tick: Callable[[], None] | None = None,
    into=None,
) -> tuple[np.ndarray, list[int], list[ImageProblem]]:
    """decode_checked's work without PyTorch: (N_good, size, size, 3) uint8 (NHWC), good indices, problems.
    into: where image i goes instead (into[i] = pixels; sources.FileImages), returned as it is, bad slots
    left in place."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8) if into is None else into
    problems: list[ImageProblem | None] = [None] * len(paths)
    load = load or (lambda i: decode_image(paths[i], size))

    def work(i: int) -> None:
        try:
            out[i] = load(i)
        except ImageProblem as problem:
            problems[i] = problem
        if tick is not None:
            tick()

    if len(paths) > 1 and default_workers(workers) > 1:
        with ThreadPoolExecutor(default_workers(workers)) as pool:
            list(pool.map(work, range(len(paths))))
    else:
        for i in range(len(paths)):
            work(i)
    good = [i for i, p in enumerate(problems) if p is None]
    if len(good) < len(paths) and into is None:
        out = out[good]
    return out, good, [p for p in problems if p is not None]


def decode_many(paths: list[Path], size: int, workers: int = 0) -> torch.Tensor:
    """All files as one (N, 3, size, size) uint8 tensor; the first bad file raises its ImageProblem."""
    images, _, problems = decode_checked(paths, size, workers)
    if problems:
        raise problems[0]
    return images
