"""Predict over any number of image files, chunk by chunk, without PyTorch: what `binclass predict`
does around the model, shared by the run-folder predictor (PyTorch) and the ONNX one (onnxruntime)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .data.forms import images_to_predict
from .errors import BinclassError
from .metrics import predict_labels

CHUNK = 512  # images decoded at a time: memory stays bounded for folders of any size


def images_under(inputs: list[Path]) -> list[Path]:
    """Every image among `inputs` (files, folders searched recursively, tables, shards: data.forms); none
    is an error."""
    paths = images_to_predict(inputs)
    if not paths:
        raise BinclassError(f"no images found in {', '.join(map(str, inputs))}")
    return paths


def predict_in_chunks(
    paths: list[Path],
    probabilities: Callable[[list[Path]], np.ndarray],
    classes: list[str],
    threshold: float,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[Path, float, str]]:
    """(path, probability of the positive class, predicted class name) for every path, streamed:
    probabilities(chunk) decodes and scores at most CHUNK files at a time."""
    for start in range(0, len(paths), CHUNK):
        if progress is not None:
            progress(start, len(paths))
        chunk = paths[start : start + CHUNK]
        probs = probabilities(chunk)
        for path, prob, label in zip(chunk, probs.tolist(), predict_labels(probs, threshold).tolist()):
            yield path, float(prob), classes[label]
    if progress is not None:
        progress(len(paths), len(paths))
