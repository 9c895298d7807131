"""Calibration and thresholds against scikit-learn's own measures."""

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, f1_score, precision_score, recall_score, roc_curve

from binclass.calibration import (
    ECE_BINS,
    Target,
    brier,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    metrics_at,
    parse_target,
    reliability,
    sigmoid,
)


def _scores(seed=0, n=1000, scale=3.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    logits = scale * (rng.normal(size=n) + 1.2 * (2 * y - 1))  # overconfident when scale > 1
    return y, logits


@pytest.mark.parametrize("seed", range(3))
def test_brier_and_reliability_match_scikit_learn(seed):
    y, z = _scores(seed)
    p = sigmoid(z)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    share, mean = calibration_curve(y, p, n_bins=ECE_BINS, strategy="uniform")
    rows = reliability(y, p)
    assert [r["positive_share"] for r in rows] == pytest.approx(share, abs=1e-12)
    assert [r["mean_prob"] for r in rows] == pytest.approx(mean, abs=1e-12)
    ece = sum(r["n"] for r in rows) and sum(r["n"] * abs(r["mean_prob"] - r["positive_share"]) for r in rows) / len(y)
    assert expected_calibration_error(y, p) == pytest.approx(ece)


def test_temperature_matches_a_one_weight_logistic_regression():
    y, z = _scores(1, scale=3.0)
    reference = LogisticRegression(fit_intercept=False, C=1e10, tol=1e-12, max_iter=10000).fit(z[:, None], y)
    t = fit_temperature(z, y)
    assert 1 / t == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    assert t > 1.1  # overconfident logits are cooled (the true log-odds are 2.4 x where the logit is 3 x)
    before, after = sigmoid(z), sigmoid(z / t)
    assert expected_calibration_error(y, after) < expected_calibration_error(y, before)
    assert brier(y, after) < brier(y, before)
    y2, z2 = _scores(2, scale=0.3)
    assert fit_temperature(z2, y2) < 1  # underconfident logits are sharpened
    assert math.isinf(fit_temperature(-z2, y2))  # anti-correlated: no temperature helps


def test_thresholds_meet_their_targets_as_scikit_learn_counts_them():
    y, z = _scores(3, scale=1.0)
    p = sigmoid(z)
    t = choose_threshold(y, p, parse_target("recall=0.95"))
    pred = (p >= t).astype(int)
    assert recall_score(y, pred) >= 0.95
    above = p[p > t].min()  # the next image up: a threshold past it no longer meets the target
    assert recall_score(y, (p >= np.nextafter(above, 1)).astype(int)) < 0.95
    t = choose_threshold(y, p, parse_target("precision=0.9"))
    assert precision_score(y, (p >= t).astype(int)) >= 0.9
    fpr, tpr, thresholds = roc_curve(y, p)
    t = choose_threshold(y, p, parse_target("fpr=0.01"))
    reference = thresholds[fpr <= 0.01].min()
    assert np.array_equal(p >= t, p >= reference) and p[p < reference].max() < t < reference
    t = choose_threshold(y, p, Target("balanced", None))
    youden = thresholds[np.argmax(tpr - fpr)]
    assert np.array_equal(p >= t, p >= youden)
    t = choose_threshold(y, p, Target("f1", None))
    best = max(f1_score(y, (p >= c).astype(int)) for c in np.unique(p))
    assert f1_score(y, (p >= t).astype(int)) == pytest.approx(best)
    assert choose_threshold(np.array([0, 0, 1]), np.array([0.9, 0.8, 0.1]), parse_target("precision=0.99")) is None


def test_a_threshold_sits_between_two_images_scores_never_on_one():
    y, z = _scores(4, scale=1.0)
    p = sigmoid(z)
    for target in ("recall=0.9", "precision=0.9", "fpr=0.05", "balanced", "f1"):
        t = choose_threshold(y, p, parse_target(target))
        assert t not in set(p.tolist()), target
        # An image a float32 path scores a few ulps lower stays on the same side.
        nudged = p * (1 - 1e-7)
        assert np.array_equal(p >= t, nudged >= t), target
    everything = choose_threshold(np.array([0, 1, 1]), np.array([0.2, 0.3, 0.4]), parse_target("recall=0.99"))
    assert everything == pytest.approx(0.25)  # between the two lowest: both positives called, the negative not


def test_metrics_at_a_threshold_carry_intervals():
    y, z = _scores(4)
    p = sigmoid(z)
    m = metrics_at(y, p, 0.5)
    pred = (p >= 0.5).astype(int)
    assert m["recall"]["value"] == pytest.approx(recall_score(y, pred))
    assert m["precision"]["value"] == pytest.approx(precision_score(y, pred))
    assert m["recall"]["low"] < m["recall"]["value"] < m["recall"]["high"]
    assert m["recall"]["of"] == int(y.sum())


@pytest.mark.parametrize("text", ["recall", "recall=1.5", "fpr=x", "auc", "balanced=0.3"])
def test_bad_targets_are_one_line(text):
    with pytest.raises(ValueError, match="--for"):
        parse_target(text)
