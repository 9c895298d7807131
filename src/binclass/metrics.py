"""Binary classification metrics as pure functions of labels, probabilities and counts.

Everything is computed from counts accumulated over every sample (never from averages of batch
averages). Conventions follow scikit-learn: a ratio whose denominator is zero is 0.0, and ROC AUC
is undefined (NaN) when only one class is present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def correct(self) -> int:
        return self.tp + self.tn


def predict_labels(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Prediction class (0/1) = probability of the positive class >= threshold; the one rule used everywhere."""
    return (np.asarray(probs, dtype=np.float64) >= threshold).astype(np.int64)


def count(labels: np.ndarray, preds: np.ndarray) -> Counts:
    y = np.asarray(labels).astype(bool)
    p = np.asarray(preds).astype(bool)
    return Counts(tp=int(np.sum(y & p)), fp=int(np.sum(~y & p)), tn=int(np.sum(~y & ~p)), fn=int(np.sum(y & ~p)))


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def accuracy(c: Counts) -> float:
    return _ratio(c.correct, c.n)


def precision(c: Counts) -> float:
    return _ratio(c.tp, c.tp + c.fp)


def recall(c: Counts) -> float:
    return _ratio(c.tp, c.tp + c.fn)


def f1(c: Counts) -> float:
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def balanced_accuracy(c: Counts) -> float:
    """Mean recall over the classes present in the labels (scikit-learn's definition)."""
    recalls = []
    if c.tp + c.fn:
        recalls.append(c.tp / (c.tp + c.fn))
    if c.tn + c.fp:
        recalls.append(c.tn / (c.tn + c.fp))
    return float(np.mean(recalls)) if recalls else 0.0


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: honest near 0 and 1, unlike the normal interval."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # Start of each run of equal values, and its end (exclusive).
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction); NaN if one class is absent."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct score, from (0, 0) to (1, 1)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_run = np.r_[s[1:] != s[:-1], True]
    tps = np.cumsum(y)[last_of_run]
    fps = np.cumsum(~y)[last_of_run]
    tpr = np.r_[0.0, tps / max(1, y.sum())]
    fpr = np.r_[0.0, fps / max(1, (~y).sum())]
    return fpr, tpr


def binary_cross_entropy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean BCE computed from logits in float64 (stable for any logit: log(1 + e^-|z|) form)."""
    y = np.asarray(labels, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64)
    if len(z) == 0:
        return float("nan")
    per_sample = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return float(per_sample.mean())


def summarize(labels: np.ndarray, logits: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict:
    """Every evaluation metric of one pass over a labeled set."""
    c = count(labels, predict_labels(probs, threshold))
    low, high = wilson_interval(c.correct, c.n)
    return {
        "n": c.n,
        "loss": binary_cross_entropy(labels, logits),
        "accuracy": accuracy(c),
        "accuracy_low": low,
        "accuracy_high": high,
        "precision": precision(c),
        "recall": recall(c),
        "f1": f1(c),
        "balanced_accuracy": balanced_accuracy(c),
        "auc": roc_auc(labels, probs),
        # rows: true class, columns: predicted class, both in class-index order
        "confusion": [[c.tn, c.fp], [c.fn, c.tp]],
    }


MAX_DIGITS = 6


def format_score(value: float, digits: int = 3) -> str:
    """A rate or score in [0, 1] with `digits` decimals, and more where rounding would print a perfect 1 or
    a 0 the data did not give: an AUC of 0.9996 prints as 0.9996, never 1.000. Past MAX_DIGITS decimals
    it says so: >0.999999."""
    if not math.isfinite(value):
        return str(value)
    for places in range(digits, MAX_DIGITS + 1):
        text = f"{value:.{places}f}"
        if not ((value < 1 and float(text) >= 1) or (value > 0 and float(text) <= 0)):
            return text
    return (
        f">{1 - 10**-MAX_DIGITS:.{MAX_DIGITS}f}" if value < 1 and value > 0.5 else f"<{10**-MAX_DIGITS:.{MAX_DIGITS}f}"
    )
