import warnings

import pytest
import torch
from helpers import finding_ids

from binclass import watch
from binclass.watch import BinclassWatchWarning, Watcher, WatchError


def test_argmax_over_one_column_raises():
    out = torch.randn(20, 1)
    labels = torch.randint(0, 2, (20, 1)).float()
    with pytest.raises(WatchError, match="metric-argmax-single-output"):
        Watcher(mode="raise").batch(out, labels, torch.argmax(out, dim=1))


def test_label_shape_broadcast():
    w = Watcher(mode="warn")
    with pytest.warns(BinclassWatchWarning, match="label-shape-broadcast"):
        found = w.batch(torch.rand(8, 1), torch.randint(0, 2, (8,)).float())
    assert "label-shape-broadcast" in finding_ids(found)


def test_threshold_on_logits():
    torch.manual_seed(0)
    logits = torch.randn(64, 1) * 2
    labels = torch.randint(0, 2, (64, 1)).float()
    found = Watcher(mode="warn")
    with pytest.warns(BinclassWatchWarning):
        res = found.batch(logits, labels, (logits > 0.5).float())
    assert "threshold-on-logits" in finding_ids(res)


def test_constant_predictions_after_enough_samples():
    w = Watcher(mode="warn", min_samples=100, min_batches=3)
    found = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(6):
            probs = torch.rand(32, 1) * 0.4  # all below 0.5 but varying
            labels = torch.randint(0, 2, (32, 1)).float()
            found |= finding_ids(w.batch(probs, labels, (probs >= 0.5).float()))
    assert "constant-predictions" in found


def test_healthy_batches_are_silent():
    w = Watcher(mode="raise", min_samples=50, min_batches=2)
    torch.manual_seed(1)
    for _ in range(10):
        labels = torch.randint(0, 2, (32, 1)).float()
        logits = (labels * 2 - 1) * 2 + torch.randn(32, 1)
        assert w.batch(logits, labels, (torch.sigmoid(logits) >= 0.5).float()) == []
        assert w.batch(logits.squeeze(1), labels.squeeze(1), (logits.squeeze(1) >= 0).float()) == []
    # multi-class outputs with argmax are not a one-output bug
    out = torch.randn(16, 10)
    assert w.batch(out, torch.randint(0, 10, (16,)), out.argmax(1)) == []


def test_module_level_api_warns_once():
    watch.reset()
    out = torch.randn(20, 1)
    with pytest.warns(BinclassWatchWarning):
        watch.batch(out, torch.randint(0, 2, (20, 1)).float(), out.argmax(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        watch.batch(out, torch.randint(0, 2, (20, 1)).float(), out.argmax(1))  # already reported: silent
    watch.reset()
