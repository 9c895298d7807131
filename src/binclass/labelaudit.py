"""Likely wrong labels among the training images: out-of-sample probabilities for every image from a
K-fold logistic regression on frozen backbone features, ranked by cleanlab's confident learning
(binclass[audit]). The model never sees the image it scores, so an image whose features sit among the
other class's images gets a low probability for its given label, however the network would memorize it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BinclassError

FOLDS = 5  # each image scored by a model fitted on the other 80%: cleanlab's recommended K-fold
# Inverse L2 strength of the per-fold logistic regression on standardized 1280-d features: weak enough
# to fit 1600 images, strong enough that one mislabelled image cannot pull its own neighbourhood over.
REGULARIZATION_C = 0.05
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
    probs: np.ndarray  # (n,) out-of-sample probability of the given label, every image

    @property
    def share(self) -> float:
        return len(self.issues) / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        return {"audited": self.n, "flagged": len(self.issues), "share": round(self.share, 6),
                "issues": [i.to_dict() for i in self.issues]}  # fmt: skip


def _need():
    try:
        import cleanlab.filter
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise BinclassError("the label audit needs cleanlab: pip install 'binclass[audit]'") from None
    return cleanlab.filter, LogisticRegression, StratifiedKFold, StandardScaler


def out_of_sample_probs(features: np.ndarray, labels: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """(N, 2) class probabilities of every image from a model that did not see it (stratified K-fold)."""
    _, LogisticRegression, StratifiedKFold, StandardScaler = _need()
    labels = np.asarray(labels)
    folds = min(folds, int(np.bincount(labels, minlength=2).min()))
    if folds < 2:
        raise BinclassError("the label audit needs at least two images of each class")
    probs = np.zeros((len(labels), 2))
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels):
        scaler = StandardScaler().fit(features[fit])
        model = LogisticRegression(C=REGULARIZATION_C, max_iter=2000)
        model.fit(scaler.transform(features[fit]), labels[fit])
        probs[held] = model.predict_proba(scaler.transform(features[held]))
    return probs


def audit_labels(features: np.ndarray, labels: list[int], paths: list, classes: list[str], seed: int = 0) -> LabelAudit:
    """features: (N, F) backbone features of the training images (the mean of an image's views where
    there are several); labels: the given labels; the images cleanlab flags, ranked by self-confidence."""
    cleanlab_filter = _need()[0]
    y = np.asarray(labels)
    probs = out_of_sample_probs(np.asarray(features, dtype=np.float64), y, seed=seed)
    flagged = cleanlab_filter.find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
    given = probs[np.arange(len(y)), y]
    issues = [
        LabelIssue(str(paths[i]), classes[y[i]], classes[1 - y[i]], float(given[i]), rank)
        for rank, i in enumerate(flagged.tolist(), start=1)
    ]
    return LabelAudit(issues, len(y), given)
