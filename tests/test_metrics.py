import math

import numpy as np
import pytest
from sklearn import metrics as skm

from binclass import metrics as m


def _cases():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100, 1001):
        labels = rng.integers(0, 2, n)
        probs = rng.random(n).astype(np.float32)
        yield labels, probs
    # ties in scores, heavily imbalanced
    labels = (rng.random(300) < 0.1).astype(int)
    yield labels, np.round(rng.random(300), 1).astype(np.float32)


@pytest.mark.parametrize("labels,probs", list(_cases()))
def test_counts_metrics_match_sklearn(labels, probs):
    preds = m.predict_labels(probs, 0.5)
    c = m.count(labels, preds)
    assert c.n == len(labels)
    assert m.accuracy(c) == pytest.approx(skm.accuracy_score(labels, preds), abs=1e-12)
    assert m.precision(c) == pytest.approx(skm.precision_score(labels, preds, zero_division=0), abs=1e-12)
    assert m.recall(c) == pytest.approx(skm.recall_score(labels, preds, zero_division=0), abs=1e-12)
    assert m.f1(c) == pytest.approx(skm.f1_score(labels, preds, zero_division=0), abs=1e-12)
    cm = skm.confusion_matrix(labels, preds, labels=[0, 1])
    assert [[c.tn, c.fp], [c.fn, c.tp]] == cm.tolist()
    if len(set(labels)) == 2:
        assert m.balanced_accuracy(c) == pytest.approx(skm.balanced_accuracy_score(labels, preds), abs=1e-12)
        assert m.roc_auc(labels, probs) == pytest.approx(skm.roc_auc_score(labels, probs), abs=1e-12)
        fpr, tpr = m.roc_curve(labels, probs)
        sk_fpr, sk_tpr, _ = skm.roc_curve(labels, probs, drop_intermediate=False)
        np.testing.assert_allclose(fpr, sk_fpr)
        np.testing.assert_allclose(tpr, sk_tpr)


@pytest.mark.parametrize("label_value", [0, 1])
@pytest.mark.parametrize("pred_value", [0, 1])
def test_single_class_edge_cases(label_value, pred_value):
    labels = np.full(20, label_value)
    preds = np.full(20, pred_value)
    c = m.count(labels, preds)
    assert m.accuracy(c) == skm.accuracy_score(labels, preds)
    assert m.precision(c) == skm.precision_score(labels, preds, zero_division=0)
    assert m.recall(c) == skm.recall_score(labels, preds, zero_division=0)
    assert m.f1(c) == skm.f1_score(labels, preds, zero_division=0)
    with pytest.warns(UserWarning):
        expected = skm.balanced_accuracy_score(labels, preds)
    assert m.balanced_accuracy(c) == pytest.approx(expected)
    assert math.isnan(m.roc_auc(labels, np.linspace(0, 1, 20)))


def test_probability_exactly_at_threshold_is_positive():
    probs = np.array([0.5, 0.5 - 1e-9, 0.7, 0.3], dtype=np.float64)
    assert m.predict_labels(probs, 0.5).tolist() == [1, 0, 1, 0]
    assert m.predict_labels(np.float32([0.3]), 0.3).tolist() == [int(np.float32(0.3) >= 0.3)]
    labels = np.array([1, 1, 0, 0])
    preds = m.predict_labels(probs, 0.5)
    assert m.accuracy(m.count(labels, preds)) == skm.accuracy_score(labels, (probs >= 0.5).astype(int))


def test_wilson_interval_known_values_and_symmetry():
    # Reference values: Wilson score interval, z = 1.96 (Newcombe 1998, table I examples).
    low, high = m.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = m.wilson_interval(81, 263)
    assert (low, high) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    for k, n in [(3, 17), (500, 1000), (990, 1000)]:
        lo, hi = m.wilson_interval(k, n)
        lo2, hi2 = m.wilson_interval(n - k, n)
        assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)
        assert lo < k / n < hi
    # 1000 validation images at 70%: about +-2.8 points, the "+-3 points"
    lo, hi = m.wilson_interval(700, 1000)
    assert 0.027 < (hi - lo) / 2 < 0.030


def test_bce_from_logits_matches_sklearn_log_loss():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    logits = rng.normal(0, 3, 200)
    probs = 1 / (1 + np.exp(-logits))
    assert m.binary_cross_entropy(labels, logits) == pytest.approx(skm.log_loss(labels, probs), rel=1e-9)
    # extreme logits stay finite
    assert math.isfinite(m.binary_cross_entropy(np.array([1, 0]), np.array([-1e4, 1e4])))


def test_summarize_keys_and_values():
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.6, 0.7, 0.4, 0.9], dtype=np.float32)
    logits = np.log(probs / (1 - probs))
    s = m.summarize(labels, logits, probs, 0.5)
    assert s["n"] == 5 and s["accuracy"] == 0.6
    assert s["confusion"] == [[1, 1], [1, 2]]
    assert s["auc"] == pytest.approx(skm.roc_auc_score(labels, probs))
    assert s["accuracy_low"] < 0.6 < s["accuracy_high"]


@pytest.mark.parametrize(
    "value, shown",
    [(0.9996, "0.9996"), (0.99996, "0.99996"), (0.5, "0.500"), (1.0, "1.000"), (0.0, "0.000"), (2e-4, "0.0002"),
     (1 - 1e-9, ">0.999999"), (0.1234, "0.123")],
)  # fmt: skip
def test_a_score_never_prints_as_perfect_when_it_is_not(value, shown):
    assert m.format_score(value) == shown


def test_the_roc_says_how_far_from_perfect_it_is(tmp_path, monkeypatch):
    from binclass.report import plots

    drawn = []
    monkeypatch.setattr(plots, "finish_figure", lambda fig, path, axes=(): drawn.append(fig))
    labels = np.r_[np.zeros(100), np.ones(100)]
    probs = np.r_[np.linspace(0, 0.5, 100), np.linspace(0.499, 1, 100)]  # one negative above one positive
    assert m.format_score(m.roc_auc(labels, probs)) == "0.9999"
    plots.plot_roc(labels, probs, tmp_path / "roc.png")
    main, inset = drawn[0].axes[0], drawn[0].axes[0].child_axes
    legend = [t.get_text() for t in main.get_legend().get_texts()]
    assert legend[0] == "AUC 0.9999 (1 of 10000 pairs misordered)"
    assert len(inset) == 1 and inset[0].get_xlim() == (0, 0.1)  # the corner, zoomed
