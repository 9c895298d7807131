"""The label audit: out-of-sample probabilities on frozen features, cleanlab's ranking, the doctor's
finding, the report's gallery, check --labels-audit, and --exclude."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import runner, train_cli

from binclass.cli import app
from binclass.labelaudit import audit_labels, out_of_sample_probs

pytest.importorskip("cleanlab")


def _clusters(n: int = 400, flips: int = 20, seed: int = 0):
    """Two well separated clusters of 64-d features, and labels with `flips` of them swapped."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    centres = rng.normal(size=(2, 64)) * 3
    x = centres[y] + rng.normal(size=(n, 64))
    flipped = rng.choice(n, flips, replace=False)
    noisy = y.copy()
    noisy[flipped] = 1 - noisy[flipped]
    return x, noisy, set(flipped.tolist())


def test_out_of_sample_probabilities_come_from_models_that_did_not_see_the_image():
    x, noisy, flipped = _clusters()
    probs = out_of_sample_probs(x, noisy)
    given = probs[np.arange(len(noisy)), noisy]
    # a flipped image sits among the other class: a model that never saw it disagrees with its label
    assert all(given[i] < 0.5 for i in flipped)
    assert np.mean([given[i] > 0.5 for i in range(len(noisy)) if i not in flipped]) > 0.99
    from sklearn.linear_model import LogisticRegression

    seen = LogisticRegression(C=100, max_iter=3000).fit(x, noisy).predict_proba(x)[np.arange(len(noisy)), noisy]
    assert np.mean([seen[i] for i in flipped]) > np.mean([given[i] for i in flipped])  # memorized when seen


def test_the_audit_flags_the_flips_most_likely_first():
    x, noisy, flipped = _clusters()
    audit = audit_labels(x, noisy.tolist(), [f"img{i}.png" for i in range(len(noisy))], ["a", "b"])
    found = {int(i.path[3:-4]) for i in audit.issues}
    assert found == flipped and [i.rank for i in audit.issues] == list(range(1, len(flipped) + 1))
    assert [i.prob_given for i in audit.issues] == sorted(i.prob_given for i in audit.issues)
    first = audit.issues[0]
    assert first.suggested != first.given and {first.given, first.suggested} == {"a", "b"}
    assert audit.to_dict()["flagged"] == len(flipped) and 0 < audit.estimated <= 2 * len(flipped)


@pytest.fixture(scope="module")
def noisy_table(tiny_data, tmp_path_factory) -> tuple[Path, list[str]]:
    """The generated set's labels as a table, with four training labels swapped."""
    rows, swapped = ["file_name,label,split"], []
    for split in ("train", "validation"):
        for cls in ("circles", "squares"):
            for n, f in enumerate(sorted((tiny_data / split / cls).iterdir())):
                label = cls
                if split == "train" and n in (3, 11):
                    label = "squares" if cls == "circles" else "circles"
                    swapped.append(str(f))
                rows.append(f"{f},{label},{split}")
    table = tmp_path_factory.mktemp("noisy") / "labels.csv"
    table.write_text("\n".join(rows) + "\n")
    return table, swapped


def test_a_pretrained_run_audits_its_labels_and_a_rerun_excludes_them(tiny_data, noisy_table, tmp_path):
    table, swapped = noisy_table
    settings = dict(labels=table, image_size=64, epochs=2)
    result = train_cli(tiny_data, tmp_path / "noisy", **settings)
    assert result.exit_code == 0, result.output
    audit = json.loads((tmp_path / "noisy" / "label_issues.json").read_text())
    flagged = [e["path"] for e in audit["issues"]]
    assert set(swapped) <= set(flagged[: len(swapped) + 2])  # the swapped four, among the first
    assert audit["issues"][0]["picture"] and "labels: " in result.output
    findings = json.loads((tmp_path / "noisy" / "diagnosis.json").read_text())["findings"]
    label_issues = [f for f in findings if f["id"] == "label-issues"]
    assert len(label_issues) == 1 and label_issues[0]["evidence"]["flagged"] == len(flagged)
    report = (tmp_path / "noisy" / "report.html").read_text()
    assert "Training labels that look wrong" in report and "looks like" in report
    listing = tmp_path / "wrong.txt"
    listing.write_text("# the audit's list, checked by eye\n" + "\n".join(swapped) + "\n")
    again = train_cli(tiny_data, tmp_path / "clean", **settings, exclude=listing)
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[0].startswith("data: 76 train, 30 validation")
    assert f"excluded: 4 images listed in {listing}" in again.output
    assert sorted((tmp_path / "clean" / "excluded.txt").read_text().split()) == sorted(swapped)
    assert json.loads((tmp_path / "clean" / "config.json").read_text())["exclude"] == str(listing)


def test_exclude_naming_no_image_is_one_line(tiny_data, tmp_path):
    listing = tmp_path / "wrong.txt"
    listing.write_text(str(tiny_data / "train" / "circles" / "nope.png") + "\n")
    result = train_cli(tiny_data, tmp_path / "run", model="seed", image_size=32, exclude=listing)
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1
    assert "1 line(s) name no image of the data (first: " in result.output and not (tmp_path / "run").exists()


def test_check_lists_every_flagged_path_and_a_missing_cleanlab_is_one_line(tiny_data, noisy_table, monkeypatch):
    table, swapped = noisy_table
    args = ["check", str(tiny_data), "--labels", str(table), "--no-duplicates", "--labels-audit"]
    report = json.loads(runner.invoke(app, [*args, "--json"]).stdout)["label_audit"]
    assert set(swapped) <= {e["path"] for e in report["issues"]} and report["audited"] == 80
    assert all(
        0 <= e["prob_given"] < 0.5 and e["prob_other"] == pytest.approx(1 - e["prob_given"]) for e in report["issues"]
    )
    text = runner.invoke(app, args).output
    assert "training images look like the other class" in text and swapped[0] in text
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "needs cleanlab: pip install 'binclass[audit]'" in result.output
