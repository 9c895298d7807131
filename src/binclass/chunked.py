"""Predict over any number of image files, chunk by chunk, without PyTorch: what `binclass predict`
does around the model, shared by the run-folder predictor (PyTorch) and the ONNX one (onnxruntime)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

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


class Prediction(NamedTuple):
    """One image's prediction, as `binclass predict` writes it."""

    path: Path
    prob: float  # probability of the positive class
    label: str  # the predicted class name, at the run's threshold
    ood_score: float | None = None  # how unlike the training images (binclass.ood); None: the run keeps no reference
    in_distribution: bool | None = None  # ood_score at or below the run's threshold


Scored = tuple[np.ndarray, np.ndarray | None]  # a chunk's probabilities, and its ood scores (None: none)


def predict_in_chunks(
    paths: list[Path],
    score: Callable[[list[Path]], Scored],
    classes: list[str],
    threshold: float,
    progress: Callable[[int, int], None] | None = None,
    ood_threshold: float | None = None,
) -> Iterator[Prediction]:
    """A Prediction for every path, streamed: score(chunk) decodes and scores at most CHUNK files at a time."""
    for start in range(0, len(paths), CHUNK):
        if progress is not None:
            progress(start, len(paths))
        chunk = paths[start : start + CHUNK]
        probs, ood = score(chunk)
        labels = predict_labels(probs, threshold).tolist()
        for i, (path, prob, label) in enumerate(zip(chunk, probs.tolist(), labels)):
            if ood is None or ood_threshold is None:
                yield Prediction(path, float(prob), classes[label])
            else:
                yield Prediction(path, float(prob), classes[label], float(ood[i]), bool(ood[i] <= ood_threshold))
    if progress is not None:
        progress(len(paths), len(paths))
