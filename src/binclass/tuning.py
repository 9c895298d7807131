"""Tune a trained run: a temperature for its probabilities (`binclass calibrate`, `train --calibrate`)
and a threshold for a target (`binclass threshold`). Both fit on the training images held out by
--calibration-split when the run has them (calibration_predictions.csv), else on the validation images
(val_predictions.csv), and write to model.json only when asked, with where the value came from. Figures
measured on the images a value was fitted on are optimistic; the outputs say so."""

from __future__ import annotations

import csv
import datetime
import math
from pathlib import Path

import numpy as np

from .calibration import (
    BINNING,
    Target,
    brier,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    logit,
    metrics_at,
    sigmoid,
)
from .data.scan import DataLayout
from .data.sources import check_files
from .errors import BinclassError
from .run.files import CALIBRATION_PREDICTIONS_FILE, META_FILE, PREDICTIONS_FILE
from .run.weights import load_meta, save_meta, temperature_of

OPTIMISM = (
    "fitted on the validation images, so the validation figures at it are optimistic: judge it on "
    "another labeled folder (binclass evaluate RUN FOLDER), or train with --calibration-split 0.1 to fit it on "
    "held-out training images instead"
)
HELD_OUT = "fitted on training images held out from training (--calibration-split): the validation figures stay honest"


def fitting_scores(run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict, str]:
    """(labels 0/1, logits before any temperature, model.json, what they are) of the images a temperature
    or threshold is fitted on: the calibration split when the run held one out, else validation."""
    run_dir = Path(run_dir)
    meta = load_meta(run_dir)
    held = run_dir / CALIBRATION_PREDICTIONS_FILE
    path, source = (held, "calibration split") if held.exists() else (run_dir / PREDICTIONS_FILE, "validation")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        labels = np.array([meta["classes"].index(r["true_label"]) for r in rows], dtype=int)
        probs = np.array([float(r["prob"]) for r in rows])
    except FileNotFoundError:
        raise BinclassError(
            f"{path}: not found; the run has not finished (train it to the end, or --resume it)"
        ) from None
    except (OSError, KeyError, ValueError) as exc:
        raise BinclassError(f"{path}: unreadable ({exc}); retrain or restore the run folder") from None
    if len(labels) == 0 or labels.min() == labels.max():
        raise BinclassError(f"{path}: needs images of both classes")
    return labels, logit(probs), meta, source


def _note(what: str, source: str) -> str:
    return f"a {what} {OPTIMISM if source == 'validation' else HELD_OUT}"


def write_calibration_predictions(run_dir: Path, layout: DataLayout) -> Path:
    """The kept model's probability for every held-out training image (unreadable files left out)."""
    from .predict import load_predictor, predict_paths

    predictor = load_predictor(run_dir, device="cpu")
    label_of = {str(p): layout.classes[y] for p, y in zip(layout.calibration.paths, layout.calibration.labels)}
    readable, _ = check_files(layout.calibration.paths, predictor.size)
    good = [layout.calibration.paths[i] for i in readable]
    path = Path(run_dir) / CALIBRATION_PREDICTIONS_FILE
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "true_label", "prob", "pred_label"])
        for row in predict_paths(predictor, good):
            writer.writerow([str(row.path), label_of[str(row.path)], repr(float(row.prob)), row.label])
    return path


def calibrate_run(run_dir: Path, write: bool = True) -> dict:
    """Fit a temperature on the validation predictions; with write, store it in model.json (predict,
    evaluate and export apply it)."""
    labels, logits, meta, source = fitting_scores(run_dir)
    t = fit_temperature(logits, labels)
    if not math.isfinite(t):
        raise BinclassError(f"{run_dir}: the {source} probabilities rank the classes backwards; no temperature helps")
    before, after = sigmoid(logits), sigmoid(logits / t)
    result = {
        "temperature": t,
        "fitted_on": source,
        "images": int(len(labels)),
        "brier_before": brier(labels, before),
        "brier_after": brier(labels, after),
        "ece_before": expected_calibration_error(labels, before),
        "ece_after": expected_calibration_error(labels, after),
        "ece_binning": BINNING,
        "note": _note("temperature", source),
    }
    if write:
        meta["temperature"] = t
        meta["calibration"] = {k: v for k, v in result.items() if k not in ("temperature", "note")}
        meta["calibration"]["date"] = datetime.date.today().isoformat()
        save_meta(meta, run_dir)
        result["written"] = str(Path(run_dir) / META_FILE)
    return result


def threshold_run(run_dir: Path, target: Target, write: bool = False) -> dict:
    """The threshold meeting target on the validation predictions (after the stored temperature), the
    metrics there with their intervals; with write, stored in model.json with its provenance."""
    labels, logits, meta, source = fitting_scores(run_dir)
    probs = sigmoid(logits / temperature_of(meta))
    threshold = choose_threshold(labels, probs, target)
    if threshold is None:
        raise BinclassError(
            f"--for {target.text}: no threshold reaches it on the {len(labels)} {source} images; ask for less"
        )
    result = {
        "for": target.text,
        "fitted_on": source,
        "images": int(len(labels)),
        "temperature": temperature_of(meta),
        "at_threshold": metrics_at(labels, probs, threshold),
        "at_stored_threshold": metrics_at(labels, probs, float(meta["threshold"])),
        "note": _note("threshold", source),
    }
    if write:
        previous = float(meta["threshold"])
        meta["threshold"] = threshold
        meta["threshold_provenance"] = {
            "for": target.text,
            "fitted_on": source,
            "images": int(len(labels)),
            "temperature": temperature_of(meta),
            "previous": previous,
            "date": datetime.date.today().isoformat(),
        }
        save_meta(meta, run_dir)
        result["written"] = str(Path(run_dir) / META_FILE)
    return result
