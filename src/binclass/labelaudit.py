"""Likely wrong labels among the training images: out-of-sample probabilities for every image from a
K-fold logistic regression on frozen backbone features, ranked by cleanlab's confident learning
(binclass[audit]). The model never sees the image it scores, so an image whose features sit among the
other class's images gets a low probability for its given label, however the network would memorize it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BinclassError

FOLDS = 5  # each image scored by a model fitted on the other 80%: cleanlab's recommended K-fold
# Inverse L2 strength of the per-fold logistic regression on unit-length features. Strong regularization
# keeps a flipped label from pulling its own neighbourhood over: with 5% of the shared set's training
# labels flipped, C = 1 ranked 95 flips among the 100 least confident images, C = 100 only 86
# (docs/mistakes-and-data.md).
REGULARIZATION_C = 1.0
# Which images cleanlab flags: every image whose out-of-sample prediction is the other class. Over five
# draws of 5% flips it found 97-100% of them at a precision of 0.76-0.81; cleanlab's default
# (prune_by_noise_rate), over four of those draws, 90-99% at 0.93-0.97. An audit is read by a person who
# drops what is truly wrong, so missing a flip costs more than showing a correct image.
FILTER_BY = "predicted_neq_given"
SHOWN = 10  # the top issues the doctor's finding names


@dataclass(frozen=True)
class LabelIssue:
    path: str
    given: str  # the label the data gives
    suggested: str  # the other class
    prob_given: float  # out-of-sample probability of the given label (cleanlab's self-confidence)
    rank: int  # 1 = the most likely wrong

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "given": self.given,
            "suggested": self.suggested,
            "prob_given": round(self.prob_given, 6),
            "prob_other": round(1 - self.prob_given, 6),
            "rank": self.rank,
        }


@dataclass(frozen=True)
class LabelAudit:
    """The flagged images, most likely wrong first, out of n audited."""

    issues: list[LabelIssue]
    n: int
    estimated: int  # cleanlab's estimate of how many labels are wrong (its calibrated confident joint)
    probs: np.ndarray  # (n,) out-of-sample probability of the given label, every image

    @property
    def share(self) -> float:
        return len(self.issues) / self.n if self.n else 0.0

    @property
    def estimated_share(self) -> float:
        return self.estimated / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        return {
            "method": f"{FOLDS}-fold logistic regression on frozen backbone features; cleanlab find_label_issues "
            f"(filter_by={FILTER_BY}), ranked by self-confidence",
            "audited": self.n,
            "flagged": len(self.issues),
            "estimated_wrong": self.estimated,
            "estimated_share": round(self.estimated_share, 6),
            "issues": [i.to_dict() for i in self.issues],
        }


def need_cleanlab():
    try:
        import cleanlab.count
        import cleanlab.filter
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
    except ImportError:
        raise BinclassError("the label audit needs cleanlab: pip install 'binclass[audit]'") from None
    return cleanlab, LogisticRegression, StratifiedKFold


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1: the features' direction, which is what tells images apart."""
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def out_of_sample_probs(features: np.ndarray, labels: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """(N, 2) class probabilities of every image from a model that did not see it (stratified K-fold)."""
    _, LogisticRegression, StratifiedKFold = need_cleanlab()
    labels = np.asarray(labels)
    folds = min(folds, int(np.bincount(labels, minlength=2).min()))
    if folds < 2:
        raise BinclassError("the label audit needs at least two images of each class")
    features = unit_rows(features)
    probs = np.zeros((len(labels), 2))
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels):
        model = LogisticRegression(C=REGULARIZATION_C, max_iter=3000).fit(features[fit], labels[fit])
        probs[held] = model.predict_proba(features[held])
    return probs


def audit_labels(features: np.ndarray, labels: list[int], paths: list, classes: list[str], seed: int = 0) -> LabelAudit:
    """features: (N, F) backbone features of the training images (the mean of an image's views where
    there are several); labels: the given labels; the images cleanlab flags, ranked by self-confidence."""
    cleanlab = need_cleanlab()[0]
    y = np.asarray(labels)
    probs = out_of_sample_probs(features, y, seed=seed)
    flagged = cleanlab.filter.find_label_issues(
        y, probs, filter_by=FILTER_BY, return_indices_ranked_by="self_confidence"
    )
    estimated = int(cleanlab.count.num_label_issues(y, probs))
    given = probs[np.arange(len(y)), y]
    issues = [
        LabelIssue(str(paths[i]), classes[y[i]], classes[1 - y[i]], float(given[i]), rank)
        for rank, i in enumerate(flagged.tolist(), start=1)
    ]
    return LabelAudit(issues, len(y), estimated, given)
