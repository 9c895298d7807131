"""Use a trained run: predict files or folders, evaluate a labeled folder."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .allocator import keep_freed_memory, release_free_memory
from .calibration import calibration_summary
from .chunked import Prediction, Scored, images_under, predict_in_chunks
from .data.decode import decode_many
from .data.forms import DataSpec, read_labeled
from .data.sources import Source, TensorSource
from .device import resolve_device
from .engine.infer import predict_logits, prepare_model, probabilities
from .engine.loop import evaluate
from .metrics import predict_labels
from .ood import OodReference, load_reference
from .run.files import EVALUATION_FILE
from .run.weights import load_meta, load_model, temperature_of


@dataclass
class Predictor:
    model: nn.Module
    meta: dict
    device: torch.device
    batch_size: int = 250
    checkpoint: str = "last"  # which weights file was loaded: last or best
    ood: OodReference | None = None  # the run's out-of-distribution reference, where it holds for these weights

    @property
    def mean(self) -> list[float]:
        return self.meta["normalization"]["mean"]

    @property
    def std(self) -> list[float]:
        return self.meta["normalization"]["std"]

    @property
    def tta(self) -> bool:
        return bool(self.meta.get("tta", False))

    @property
    def size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def temperature(self) -> float:
        return temperature_of(self.meta)


def load_predictor(run_dir: Path, checkpoint: str = "auto", device: str = "auto") -> Predictor:
    """checkpoint: last, best, or auto (what model.json's default_checkpoint names; last if it names none)."""
    if checkpoint == "auto":
        checkpoint = load_meta(Path(run_dir)).get("default_checkpoint", "last")
    keep_freed_memory()
    model, meta = load_model(Path(run_dir), checkpoint)
    dev = resolve_device(device)
    reference = load_reference(Path(run_dir))
    if reference is not None and reference.checkpoint not in ("any", checkpoint):
        reference = None  # kept for the other weights file: its features are not this model's
    # The batch size of training's validation pass: the same arithmetic, so the same probabilities.
    batch = int(meta.get("eval_batch_size", 64))
    return Predictor(prepare_model(model, dev), meta, dev, batch, checkpoint, reference)


def score_source(predictor: Predictor, images: Source) -> tuple[torch.Tensor, np.ndarray | None]:
    """Logits (N,) and, where the run keeps a reference, ood scores (N,) of every image of a source."""
    features = [] if predictor.ood is not None else None
    logits = predict_logits(
        predictor.model,
        images,
        predictor.mean,
        predictor.std,
        predictor.batch_size,
        predictor.device,
        tta=predictor.tta,
        features=features,
    )
    ood = predictor.ood.scores(torch.cat(features)).numpy() if features else None
    return logits, ood


def predict_paths(
    predictor: Predictor, paths: list[Path], progress: Callable[[int, int], None] | None = None
) -> Iterator[Prediction]:
    """A Prediction per path (probability of the positive class, predicted class name, and the ood score
    where the run keeps a reference), streamed chunk by chunk: memory stays bounded by chunked.CHUNK
    images however many paths there are."""

    def score(chunk: list[Path]) -> Scored:
        release_free_memory()  # the last chunk's blocks: kept (see allocator), they would add up
        logits, ood = score_source(predictor, TensorSource(decode_many(chunk, predictor.size)))
        return probabilities(logits / predictor.temperature).numpy(), ood

    classes, threshold = predictor.meta["classes"], float(predictor.meta["threshold"])
    ood_threshold = predictor.ood.threshold if predictor.ood is not None else None
    return predict_in_chunks(paths, score, classes, threshold, progress, ood_threshold)


def predict_files(
    predictor: Predictor, inputs: list[Path], progress: Callable[[int, int], None] | None = None
) -> Iterator[Prediction]:
    return predict_paths(predictor, images_under(inputs), progress)


def evaluate_folder(predictor: Predictor, data_dir: Path, errors: int = 0, spec: DataSpec | None = None) -> dict:
    """Metrics of the run's model on a labelled set (class folders, or any form data.forms reads: spec);
    also written to RUN_DIR/evaluation.json by the CLI. errors: list that many of the worst false
    positives and false negatives (highest loss first)."""
    classes = predictor.meta["classes"]
    split, form = read_labeled(Path(data_dir), classes, spec)
    images = TensorSource(decode_many(split.paths, predictor.size))
    features: list[torch.Tensor] | None = [] if predictor.ood is not None else None
    ev = evaluate(
        predictor.model,
        images,
        np.asarray(split.labels),
        mean=predictor.mean,
        std=predictor.std,
        threshold=float(predictor.meta["threshold"]),
        batch_size=predictor.batch_size,
        device=predictor.device,
        tta=predictor.tta,
        temperature=predictor.temperature,
        features=features,
    )
    result = {
        "data_dir": str(data_dir),
        "form": form,
        "classes": classes,
        "positive_class": classes[1],
        "checkpoint": predictor.checkpoint,
        "temperature": predictor.temperature,
        **ev.metrics,
        "calibration": calibration_summary(np.asarray(split.labels), ev.probs),
    }
    if predictor.ood is not None and features:
        accepted = predictor.ood.accepts(predictor.ood.scores(torch.cat(features)).numpy())
        result["ood"] = {
            "threshold": predictor.ood.threshold,
            "in_distribution": int(accepted.sum()),
            "in_distribution_share": float(accepted.mean()),
            "note": f"the run's threshold accepts {predictor.ood.accept:.0%} of its own validation images",
        }
    if errors:
        threshold = float(predictor.meta["threshold"])
        result["errors"] = worst_errors(split.paths, np.asarray(split.labels), ev.probs, threshold, classes, errors)
    fitted = [
        what
        for what, key in (("temperature", "calibration"), ("threshold", "threshold_provenance"))
        if predictor.meta.get(key, {}).get("fitted_on") == "validation"
    ]
    if fitted:
        result["note"] = (
            f"{' and '.join(fitted)} fitted on the run's validation images: on those images these figures are optimistic"
        )
    return result


def write_evaluation(run_dir: Path, result: dict) -> Path:
    path = Path(run_dir) / EVALUATION_FILE
    path.write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
    return path


def worst_errors(
    paths: list[Path], labels: np.ndarray, probs: np.ndarray, threshold: float, classes: list[str], n: int
) -> dict:
    """The n highest-loss false positives and false negatives at the run's threshold."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = -np.where(labels == 1, np.log(p), np.log1p(-p))
    called = predict_labels(probs, threshold) == 1
    out = {}
    for kind, mask in (("false_positives", called & (labels == 0)), ("false_negatives", ~called & (labels == 1))):
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(-loss[idx], kind="stable")][:n]
        out[kind] = [
            {"path": str(paths[i]), "prob": float(probs[i]), "true_label": classes[labels[i]], "loss": float(loss[i])}
            for i in idx
        ]
    return out
