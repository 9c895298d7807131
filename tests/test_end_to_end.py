"""Train on generated images through the CLI, then check that every number agrees with every other."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import train_cli
from safetensors.torch import load_file
from typer.testing import CliRunner

from binclass.cli import app
from binclass.metrics import predict_labels
from binclass.run import history

runner = CliRunner()
EPOCHS = 3
BATCH = 24  # 80 training images: three full batches and one of 8, so averaging mistakes would show


@pytest.fixture(scope="module")
def run_dir(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    result = train_cli(
        tiny_data,
        out,
        model="small",
        image_size=32,
        epochs=EPOCHS,
        batch_size=BATCH,
        scheduler="step",
        step_size=1,
        gamma=0.5,
        lr=0.004,
        augment="standard",
    )
    assert result.exit_code == 0, result.output
    return out


def test_run_folder_contents(run_dir):
    for name in [
        "config.json",
        "metrics.csv",
        "steps.csv",
        "model.safetensors",
        "best.safetensors",
        "model.json",
        "curves.png",
        "confusion.png",
        "roc.png",
        "reliability.png",
        "gallery.json",
        "report.html",
        "val_predictions.csv",
        "diagnosis.json",
    ]:
        assert (run_dir / name).stat().st_size > 0, name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 0 and config["epochs"] == EPOCHS and "torch" in config["environment"]
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["classes"] == ["circles", "squares"] and meta["positive_class"] == "squares"
    assert meta["epoch"] == EPOCHS and 1 <= meta["best_epoch"] <= EPOCHS
    assert set(load_file(str(run_dir / "model.safetensors")))  # loads without pickle
    report = (run_dir / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 4  # curves, confusion, ROC, reliability diagram


def test_metrics_columns_and_rows(run_dir):
    with (run_dir / "metrics.csv").open() as f:
        header = next(csv.reader(f))
    required = [
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "val_acc_low",
        "val_acc_high",
        "val_precision",
        "val_recall",
        "val_f1",
        "val_balanced_acc",
        "val_auc",
        "lr",
        "seconds",
    ]
    assert header[: len(required)] == required
    rows = history.read_epochs(run_dir)
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    for r in rows:
        assert r["val_n"] == 30 and r["train_n"] == 80
        assert r["val_tn"] + r["val_fp"] + r["val_fn"] + r["val_tp"] == 30
        assert r["val_acc"] == (r["val_tn"] + r["val_tp"]) / 30
        assert r["val_acc_low"] <= r["val_acc"] <= r["val_acc_high"]


def test_epoch_values_count_every_sample(run_dir):
    steps = history.read_steps(run_dir)
    for row in history.read_epochs(run_dir):
        mine = [s for s in steps if s["epoch"] == row["epoch"]]
        assert [s["batch_size"] for s in mine] == [24, 24, 24, 8]
        sizes = np.array([s["batch_size"] for s in mine])
        weighted_loss = float(np.dot([s["loss"] for s in mine], sizes) / sizes.sum())
        correct = round(float(np.dot([s["batch_acc"] for s in mine], sizes)))
        assert row["train_loss"] == pytest.approx(weighted_loss, rel=1e-5)
        assert row["train_acc"] == correct / 80
    # --scheduler step --step-size 1 --gamma 0.5: constant within an epoch, halved between epochs
    for epoch in range(1, EPOCHS + 1):
        lrs = {s["lr"] for s in steps if s["epoch"] == epoch}
        assert len(lrs) == 1 and lrs.pop() == pytest.approx(0.004 * 0.5 ** (epoch - 1))


def test_reported_val_acc_equals_evaluate_and_predict(run_dir, tiny_data):
    last = history.read_epochs(run_dir)[-1]

    result = runner.invoke(app, ["evaluate", str(run_dir), str(tiny_data / "validation")])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["accuracy"] == last["val_acc"] and evaluation["checkpoint"] == "last"
    assert evaluation["loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    assert evaluation["confusion"] == [[last["val_tn"], last["val_fp"]], [last["val_fn"], last["val_tp"]]]
    assert json.loads((run_dir / "evaluation.json").read_text())["accuracy"] == last["val_acc"]
    for key in ["n", "accuracy_low", "accuracy_high", "precision", "recall", "f1", "balanced_accuracy", "auc"]:
        assert key in evaluation

    result = runner.invoke(app, ["predict", str(run_dir), str(tiny_data / "validation")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 30
    truth = [Path(r["path"]).parent.name for r in rows]
    assert sum(r["label"] == t for r, t in zip(rows, truth)) / 30 == last["val_acc"]
    probs = np.array([float(r["prob"]) for r in rows])
    recomputed = ["squares" if p else "circles" for p in predict_labels(probs, 0.5)]
    assert recomputed == [r["label"] for r in rows]

    # image for image, the same as the run's own validation predictions
    with (run_dir / "val_predictions.csv").open() as f:
        during_training = {r["path"]: r for r in csv.DictReader(f)}
    for r in rows:
        assert during_training[r["path"]]["pred_label"] == r["label"]
        assert float(during_training[r["path"]]["prob"]) == pytest.approx(float(r["prob"]), abs=1e-6)


def test_predict_to_csv_file_and_best_checkpoint(run_dir, tiny_data, tmp_path):
    out = tmp_path / "p.csv"
    one = sorted((tiny_data / "validation" / "circles").iterdir())[0]
    result = runner.invoke(app, ["predict", str(run_dir), str(one), "--csv", str(out), "--checkpoint", "best"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["prob"]) <= 1.0 and rows[0]["label"] in ("circles", "squares")


def test_doctor_on_run_folder_writes_diagnosis_and_report_section(run_dir):
    result = runner.invoke(app, ["doctor", str(run_dir), "--json"])
    assert result.exit_code in (0, 1)
    printed = json.loads(result.stdout)["findings"]
    saved = json.loads((run_dir / "diagnosis.json").read_text())["findings"]
    assert printed == saved
    # 30 validation images: the interval is about +-17 points, which the doctor must say
    assert any(f["id"] == "small-validation-set" for f in printed)
    assert 'id="doctor"' in (run_dir / "report.html").read_text()


def test_existing_run_folder_is_refused(run_dir, tiny_data):
    before = (run_dir / "metrics.csv").read_bytes()
    result = train_cli(tiny_data, run_dir, epochs=1)
    assert result.exit_code == 2
    assert "already holds a run" in result.output and "--overwrite" in result.output
    assert (run_dir / "metrics.csv").read_bytes() == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "{missing}"], "no such folder"),
        (["train", "{data}", "--optimizer", "lion"], "--optimizer 'lion'"),
        (["train", "{data}", "--lr", "-1"], "--lr must be positive"),
        (["predict", "{missing}", "x.jpg"], "model.json"),
        (["evaluate", "{missing}", "{data}"], "model.json"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message, tiny_data, tmp_path):
    fill = {"missing": str(tmp_path / "nope"), "data": str(tiny_data)}
    result = runner.invoke(
        app, [a.format(**fill) for a in args] + (["--out", str(tmp_path / "o")] if args[0] == "train" else [])
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
