"""How far to trust a probability, and where to cut: Brier score, expected calibration error with its
reliability table, temperature scaling, and the threshold that meets a target (recall, precision,
false-positive rate, balanced accuracy, F1). NumPy only; every figure over every sample."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .metrics import Counts, accuracy, count, f1, predict_labels, wilson_interval

# Equal-width bins of the positive class's probability, as scikit-learn's calibration_curve(strategy=
# "uniform") and most papers' ECE; 15 is the common choice since Guo et al. (2017), and with 1000
# validation images leaves ~60 per occupied bin.
ECE_BINS = 15
BINNING = f"{ECE_BINS} equal-width bins of the positive class's probability"


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared difference between the probability and the 0/1 label (0 is perfect, 0.25 a coin)."""
    y, p = np.asarray(labels, dtype=float), np.asarray(probs, dtype=float)
    return float(np.mean((p - y) ** 2))


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """The occupied bins: their edges, image count, mean probability and share of positives."""
    y, p = np.asarray(labels, dtype=float), np.asarray(probs, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges[1:-1], p, side="right"), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "n": int(mask.sum()),
                    "mean_prob": float(p[mask].mean()),
                    "positive_share": float(y[mask].mean()),
                }
            )
    return rows


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over the bins of (share of images) x |mean probability - share of positives|."""
    rows = reliability(labels, probs, bins)
    n = sum(r["n"] for r in rows)
    return float(sum(r["n"] / n * abs(r["mean_prob"] - r["positive_share"]) for r in rows)) if n else math.nan


def calibration_summary(labels: np.ndarray, probs: np.ndarray) -> dict:
    return {
        "brier": brier(labels, probs),
        "ece": expected_calibration_error(labels, probs),
        "ece_binning": BINNING,
        "reliability": reliability(labels, probs),
    }


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    return np.exp(-np.logaddexp(0.0, -z))


def logit(p: np.ndarray) -> np.ndarray:
    """Back from a stored probability (float32 in val_predictions.csv) to its logit, clipped off 0 and 1."""
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T > 0 minimizing the mean BCE of sigmoid(logit / T): Newton's method on a = 1/T, where the loss
    is convex (a one-weight logistic regression without bias), from a = 1, halving any step that does
    not lower the loss."""
    z, y = np.asarray(logits, dtype=float), np.asarray(labels, dtype=float)

    def loss(a: float) -> float:
        return float(np.mean(np.logaddexp(0.0, a * z) - y * a * z))

    a = 1.0
    for _ in range(100):
        p = sigmoid(a * z)
        grad = float(np.mean((p - y) * z))
        hess = float(np.mean(p * (1 - p) * z * z))
        if hess <= 1e-12 or abs(grad) < 1e-12:
            break
        step = grad / hess
        current = loss(a)
        while step != 0 and loss(a - step) > current:
            step /= 2
            if abs(step) < 1e-12:
                step = 0.0
        a -= step
        if abs(step) < 1e-10:
            break
    if a <= 0:  # outputs anti-correlated with the labels: no temperature helps
        return math.inf
    return 1.0 / a


# --- thresholds ----------------------------------------------------------------------------------------
TARGETS = ("recall", "precision", "fpr", "balanced", "f1")


@dataclass(frozen=True)
class Target:
    name: str  # one of TARGETS
    value: float | None  # the level for recall, precision, fpr

    @property
    def text(self) -> str:
        return self.name if self.value is None else f"{self.name}={self.value:g}"


def parse_target(text: str) -> Target:
    """recall=0.95 | precision=0.9 | fpr=0.01 | balanced | f1."""
    name, _, value = text.partition("=")
    name = name.strip().lower()
    if name in ("balanced", "f1") and not value:
        return Target(name, None)
    if name in ("recall", "precision", "fpr") and value:
        try:
            level = float(value)
        except ValueError:
            level = math.nan
        if 0.0 < level < 1.0:
            return Target(name, level)
    raise ValueError(f"--for {text!r}: give recall=R, precision=P or fpr=F (between 0 and 1), balanced, or f1")


def _counts_at(labels: np.ndarray, probs: np.ndarray, threshold: float) -> Counts:
    return count(labels, predict_labels(probs, threshold))


def candidate_thresholds(probs: np.ndarray) -> np.ndarray:
    """One threshold between each two neighbouring distinct probabilities, one below them all and one
    above them all: every way a threshold can split these images. A threshold never equals an image's
    probability, so a path that computes that probability a few ulps lower (float32 in predict, float64
    here) still puts the image on the same side."""
    values = np.unique(np.asarray(probs, dtype=float))
    if not len(values):
        return np.array([0.5])
    below = values[0] / 2 if values[0] > 0 else values[0]
    above = (values[-1] + 1) / 2 if values[-1] < 1 else np.nextafter(values[-1], np.inf)
    return np.concatenate([[below], (values[:-1] + values[1:]) / 2, [above]])


def choose_threshold(labels: np.ndarray, probs: np.ndarray, target: Target) -> float | None:
    """The threshold meeting target on these labels (class 1 when probability >= threshold), None when
    no threshold does: recall >= R at the highest such threshold (fewest false positives); precision >= P
    and fpr <= F at the lowest (most recall); balanced accuracy and F1 at their maximum, the lowest
    threshold among ties."""
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    t = candidate_thresholds(p)
    # Counts at every candidate at once: images with probability >= t are called positive.
    pos_sorted = np.sort(p[y == 1])
    neg_sorted = np.sort(p[y == 0])
    tp = len(pos_sorted) - np.searchsorted(pos_sorted, t, side="left")
    fp = len(neg_sorted) - np.searchsorted(neg_sorted, t, side="left")
    positives, negatives = len(pos_sorted), len(neg_sorted)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = np.where(positives > 0, tp / max(positives, 1), 0.0)
        prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        fpr = np.where(negatives > 0, fp / max(negatives, 1), 0.0)
        tnr = 1.0 - fpr
        f1s = np.where(2 * tp + fp + (positives - tp) > 0, 2 * tp / np.maximum(2 * tp + fp + (positives - tp), 1), 0.0)
    if target.name == "recall":
        ok = np.flatnonzero(rec >= target.value)
        return float(t[ok[-1]]) if len(ok) else None
    if target.name == "precision":
        ok = np.flatnonzero(np.nan_to_num(prec, nan=-1.0) >= target.value)
        return float(t[ok[0]]) if len(ok) else None
    if target.name == "fpr":
        ok = np.flatnonzero(fpr <= target.value)
        return float(t[ok[0]]) if len(ok) else None
    score = (rec + tnr) / 2 if target.name == "balanced" else f1s
    return float(t[int(np.argmax(score))])


def metrics_at(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """Accuracy, precision, recall, false-positive rate, F1 at a threshold, each rate with its Wilson
    95% interval over the images it counts."""
    c = _counts_at(np.asarray(labels, dtype=int), np.asarray(probs, dtype=float), threshold)
    pos, neg, called = c.tp + c.fn, c.tn + c.fp, c.tp + c.fp

    def rate(k: int, n: int) -> dict:
        low, high = wilson_interval(k, n) if n else (math.nan, math.nan)
        return {"value": k / n if n else math.nan, "low": low, "high": high, "of": n}

    return {
        "threshold": threshold,
        "accuracy": {**rate(c.correct, c.n), "value": accuracy(c)},
        "precision": rate(c.tp, called),
        "recall": rate(c.tp, pos),
        "fpr": rate(c.fp, neg),
        "f1": f1(c),
        "counts": {"tn": c.tn, "fp": c.fp, "fn": c.fn, "tp": c.tp},
    }
