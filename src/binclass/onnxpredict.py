"""Predict with an exported model (`binclass predict FILE.onnx images/`): onnxruntime and the decoder,
no PyTorch. The file's metadata (written by binclass.export) says the image size, classes and threshold."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .chunked import Prediction, Scored, images_under, predict_in_chunks
from .data.decode import decode_arrays
from .errors import BinclassError

BATCH = 64  # images per onnxruntime call: a 224 px backbone's activations stay well under a GB


class OnnxPredictor:
    def __init__(self, path: Path, threads: int = 0) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise BinclassError(
                "predicting with an .onnx file needs onnxruntime: pip install 'binclass[onnx]'"
            ) from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its notes on graph optimizations are not the user's
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.runtime = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for missing, malformed and foreign files
            raise BinclassError(f"{path}: not a model onnxruntime can load ({exc}); export it again") from None
        props = self.runtime.get_modelmeta().custom_metadata_map
        if "classes" not in props or "image_size" not in props:
            raise BinclassError(f"{path}: not written by `binclass export` (no classes/image_size metadata)")
        self.path = Path(path)
        self.meta = {k: _value(v) for k, v in props.items()}
        self.classes: list[str] = self.meta["classes"]
        self.size = int(self.meta["image_size"])
        self.threshold = float(self.meta["threshold"])
        self.input = self.runtime.get_inputs()[0].name
        # a second output, ood_score, where the run kept an out-of-distribution reference (binclass.export)
        has_ood = len(self.runtime.get_outputs()) > 1 and "ood_threshold" in self.meta
        self.ood_threshold: float | None = float(self.meta["ood_threshold"]) if has_ood else None

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, size, size, 3) -> float32 (N,) probabilities of the positive class."""
        return self.scores(images)[0]

    def scores(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (N, size, size, 3) -> float32 (N,) probabilities of the positive class, and the ood
        scores (None: the file has none)."""
        parts = [self.runtime.run(None, {self.input: images[i : i + BATCH]}) for i in range(0, len(images), BATCH)]
        if not parts:
            empty = np.empty(0, dtype=np.float32)
            return empty, (empty if self.ood_threshold is not None else None)
        probs = np.concatenate([p[0] for p in parts])
        return probs, (np.concatenate([p[1] for p in parts]) if self.ood_threshold is not None else None)


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # plain strings (positive_class, architecture, the layout notes)


def predict_onnx_files(
    predictor: OnnxPredictor, inputs: list[Path], progress: Callable[[int, int], None] | None = None
) -> Iterator[Prediction]:
    """A Prediction (probability of the positive class, predicted class, ood score where the file has one)
    for every image under `inputs`."""

    def score(chunk: list[Path]) -> Scored:
        images, _, problems = decode_arrays(chunk, predictor.size)
        if problems:
            raise problems[0]
        return predictor.scores(images)

    paths = images_under(inputs)
    classes, threshold = predictor.classes, predictor.threshold
    return predict_in_chunks(paths, score, classes, threshold, progress, predictor.ood_threshold)
