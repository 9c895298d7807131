"""The doctor on the histories other tools write: each written by the tool itself where it installs
here (Lightning's CSVLogger and TensorBoardLogger, torch's SummaryWriter, timm's update_summary; a
Hugging Face trainer_state.json kept as a fixture, written by transformers' Trainer), else in the format
of the tool's source (Ultralytics' results.csv, Keras's history dict and TensorBoard layout)."""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import finding_ids
from typer.testing import CliRunner

from binclass.cli import app
from binclass.doctor.diagnosis import doctor, doctor_runs
from binclass.doctor.logs import load_histories, load_history

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def errors(findings):
    return {f.id for f in findings if f.severity == "error"}


# --- Lightning -------------------------------------------------------------------------------------
def _lightning_run(root: Path, argmax_bug: bool, epochs: int = 5, version: int = 0):
    """A real Lightning fit of a one-output model on separable points, logged by CSVLogger and
    TensorBoardLogger together; with argmax_bug, val_acc is argmax over the single column."""
    pl = pytest.importorskip("lightning.pytorch")
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    torch.manual_seed(0)
    x = torch.randn(400, 2)
    y = (x[:, 0] + 0.3 * torch.randn(400) > 0).float()
    vx = torch.randn(200, 2)
    vy = torch.cat([torch.zeros(100), torch.ones(100)])
    vx[:, 0] = torch.where(vy > 0, vx[:, 0].abs(), -vx[:, 0].abs())

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 1)
            self.loss = torch.nn.BCEWithLogitsLoss()

        def training_step(self, batch, _):
            bx, by = batch
            loss = self.loss(self.fc(bx).squeeze(1), by)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            bx, by = batch
            out = self.fc(bx)
            pred = torch.argmax(out, dim=1) if argmax_bug else (out.squeeze(1) >= 0).long()
            self.log("val_loss", self.loss(out.squeeze(1), by))
            self.log("val_acc", (pred == by.long()).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.02)

    loaders = [
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(a, b), batch_size=8, shuffle=s)
        for a, b, s in ((x, y, True), (vx, vy, False))
    ]
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=[CSVLogger(root, version=version), TensorBoardLogger(root, version=version)],
        log_every_n_steps=10,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with torch.random.fork_rng():
        trainer.fit(Net(), *loaders)
    return trainer


@pytest.fixture(scope="module")
def lightning_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lightning")
    _lightning_run(root / "buggy", argmax_bug=True)
    _lightning_run(root / "sound", argmax_bug=False)
    return root


def test_lightning_csv_of_a_short_argmax_run_is_an_error(lightning_runs):
    csv_file = next((lightning_runs / "buggy").rglob("metrics.csv"))
    h = load_history(csv_file)
    assert len(h.epochs) == 5 and len(h.steps) >= 20  # validation rows apart from the step rows
    assert {e["val_acc"] for e in h.epochs} == {0.5}
    assert h.epochs[0]["val_loss"] > h.epochs[-1]["val_loss"] + 0.05
    assert "metric-argmax-single-output" in errors(doctor(csv_file))
    sound = next((lightning_runs / "sound").rglob("metrics.csv"))
    assert not errors(doctor(sound))


def test_lightning_tensorboard_events_read_like_its_csv(lightning_runs):
    version = next((lightning_runs / "buggy").rglob("events.out.tfevents.*")).parent
    csv_rows = load_history(version / "metrics.csv").epochs
    events = [f for f in version.iterdir() if f.name.startswith("events.out.tfevents.")]
    tb = load_history(events[0])
    assert [e["epoch"] for e in tb.epochs] == [e["epoch"] for e in csv_rows]
    for a, b in zip(tb.epochs, csv_rows):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6) and a["val_acc"] == b["val_acc"]
    assert len(tb.steps) == len(load_history(version / "metrics.csv").steps)
    assert "metric-argmax-single-output" in errors(doctor(events[0]))


def test_a_folder_of_runs_gets_one_diagnosis_each(lightning_runs, tmp_path):
    runs = doctor_runs(lightning_runs)
    assert len(runs) == 2  # buggy/lightning_logs/version_0 and sound/...: CSV and events in one folder, one run
    by_name = {Path(source).parts[-4]: findings for source, findings in runs}  # */lightning_logs/version_0/metrics.csv
    assert "metric-argmax-single-output" in errors(by_name["buggy"]) and not errors(by_name["sound"])
    result = runner.invoke(app, ["doctor", str(lightning_runs)])
    assert result.exit_code == 1
    assert result.output.count("== ") == 2 and "buggy" in result.output and "sound" in result.output
    written = {p.name for p in lightning_runs.rglob("*")}
    assert "diagnosis.json" not in written and "report.html" not in written  # another tool's folder: read only


# --- TensorBoard written by SummaryWriter ------------------------------------------------------------
def _summary_writer():
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


def test_summary_writer_tags_by_epoch(tmp_path):
    SummaryWriter = _summary_writer()
    with SummaryWriter(tmp_path / "runs" / "exp1") as w:
        for epoch in range(6):
            w.add_scalar("Loss/train", 0.69 - 0.05 * epoch, epoch)
            w.add_scalar("Loss/val", 0.69 - 0.02 * epoch + 0.03 * max(0, epoch - 2) ** 2, epoch)
            w.add_scalar("Accuracy/train", 0.6 + 0.06 * epoch, epoch)
            w.add_scalar("Accuracy/val", 0.6 + 0.02 * epoch, epoch)
    [h] = load_histories(tmp_path / "runs")
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3, 4, 5, 6] and not h.steps
    assert h.epochs[3]["val_loss"] == pytest.approx(0.69 - 0.06 + 0.03)
    assert h.epochs[5]["train_acc"] == pytest.approx(0.9)


def test_summary_writer_steps_and_epochs(tmp_path):
    SummaryWriter = _summary_writer()
    with SummaryWriter(tmp_path / "run") as w:
        step = 0
        for epoch in range(4):
            for _ in range(10):
                step += 1
                w.add_scalar("train/loss", 0.7 - 0.01 * step, step)
            w.add_scalar("val/loss", 0.7 - 0.1 * epoch, step)
            w.add_scalar("val/acc", 0.6 + 0.05 * epoch, step)
    h = load_history(tmp_path / "run")
    assert len(h.steps) == 40 and [e["epoch"] for e in h.epochs] == [1, 2, 3, 4]
    assert h.epochs[3]["val_acc"] == pytest.approx(0.75)


def test_keras_tensorboard_layout(tmp_path):
    """Keras's TensorBoard callback: train/ and validation/ writers, epoch_* tags at step = epoch index."""
    SummaryWriter = _summary_writer()
    run = tmp_path / "logs" / "fit"
    for split, offset in (("train", 0.0), ("validation", 0.05)):
        with SummaryWriter(run / split) as w:
            for epoch in range(5):
                w.add_scalar("epoch_loss", 0.6 - 0.1 * epoch + offset, epoch)
                w.add_scalar("epoch_accuracy", 0.7 + 0.05 * epoch - offset, epoch)
                w.add_scalar("evaluation_loss_vs_iterations", 9.0, epoch * 10)
    [h] = load_histories(tmp_path / "logs")
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3, 4, 5]
    assert h.epochs[1]["train_loss"] == pytest.approx(0.5) and h.epochs[1]["val_loss"] == pytest.approx(0.55)
    assert h.epochs[4]["val_acc"] == pytest.approx(0.85)


# --- CSV of other tools ----------------------------------------------------------------------------
def test_timm_summary_csv_accuracy_in_percent(tmp_path):
    from timm.utils import update_summary

    path = tmp_path / "summary.csv"
    for epoch in range(4):
        update_summary(
            epoch,
            {"loss": 0.7 - 0.1 * epoch},
            {"loss": 0.69 - 0.05 * epoch, "top1": 60.0 + 5 * epoch, "top5": 100.0},
            path,
            lr=0.01,
        )
    h = load_history(path)
    assert [e["val_acc"] for e in h.epochs] == pytest.approx([0.60, 0.65, 0.70, 0.75])
    assert h.epochs[-1]["val_loss"] == pytest.approx(0.54) and h.epochs[0]["lr"] == 0.01
    assert h.epochs[0]["epoch"] == 0


@pytest.mark.parametrize("padded", [False, True])
def test_ultralytics_classify_results_csv(tmp_path, padded):
    """BaseTrainer.save_metrics: '%s,' headers with epoch + 1 and time (8.1+), '%23s,' padding before."""
    keys = ["train/loss", "metrics/accuracy_top1", "metrics/accuracy_top5", "val/loss", "lr/pg0", "lr/pg1", "lr/pg2"]
    names = ["epoch"] + keys if padded else ["epoch", "time"] + keys
    head = ("%23s," if padded else "%s,") * len(names) % tuple(names)
    lines = [head.rstrip(",")]
    for epoch in range(5):
        vals = [0.8 - 0.1 * epoch, 0.70 + 0.04 * epoch, 1.0, 0.6 - 0.05 * epoch, 0.001, 0.001, 0.001]
        row = [epoch + 1] + vals if padded else [epoch + 1, 10.0 * epoch] + vals
        lines.append((("%23.5g," if padded else "%.6g,") * len(row) % tuple(row)).rstrip(","))
    path = tmp_path / "results.csv"
    path.write_text("\n".join(lines) + "\n")
    [h] = load_histories(tmp_path)
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3, 4, 5]
    assert h.epochs[4]["val_acc"] == pytest.approx(0.86) and h.epochs[4]["val_loss"] == pytest.approx(0.4)
    assert h.epochs[0]["lr"] == pytest.approx(0.001) and h.epochs[0]["train_loss"] == pytest.approx(0.8)


# --- JSON histories --------------------------------------------------------------------------------
def test_keras_history_dict(tmp_path):
    history = {
        "loss": [0.69, 0.5, 0.35, 0.2, 0.1, 0.05],
        "accuracy": [0.55, 0.75, 0.85, 0.93, 0.97, 0.99],
        "val_loss": [0.68, 0.55, 0.52, 0.58, 0.7, 0.85],
        "val_accuracy": [0.56, 0.72, 0.75, 0.74, 0.73, 0.72],
    }
    path = tmp_path / "history.json"
    path.write_text(json.dumps(history))
    h = load_history(path)
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3, 4, 5, 6] and h.epochs[3]["val_acc"] == 0.74
    assert "overfitting" in finding_ids(doctor(path))
    ragged = tmp_path / "ragged.json"
    ragged.write_text(json.dumps({"loss": [1, 2], "val_loss": [1]}))
    result = runner.invoke(app, ["doctor", str(ragged)])
    assert result.exit_code == 2 and "different lengths" in result.output


def test_hugging_face_trainer_state():
    """trainer_state.json from transformers' Trainer (fixture written by scripts/log_fixtures.py): train
    and eval entries interleaved in log_history, fractional epochs on the train entries."""
    state = FIXTURES / "hf" / "checkpoint-60" / "trainer_state.json"
    raw = json.loads(state.read_text())
    h = load_history(state)
    evals = [e for e in raw["log_history"] if "eval_loss" in e]
    trains = [e for e in raw["log_history"] if "loss" in e and "eval_loss" not in e]
    assert [e["val_loss"] for e in h.epochs] == pytest.approx([e["eval_loss"] for e in evals])
    assert [e["val_acc"] for e in h.epochs] == pytest.approx([e["eval_accuracy"] for e in evals])
    assert [s["loss"] for s in h.steps] == pytest.approx([e["loss"] for e in trains])
    assert h.batch_size == raw["train_batch_size"]
    assert all(math.isfinite(s["loss"]) for s in h.steps)
    # The output folder holds a trainer_state.json per checkpoint: the last stands for the run.
    [(source, _)] = doctor_runs(FIXTURES / "hf")
    assert Path(source).parent.name == "checkpoint-60"


def test_unknown_format_names_what_it_saw(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"foo": [1, 2], "bar": [3, 4]}))
    result = runner.invoke(app, ["doctor", str(path)])
    assert result.exit_code == 2 and "saw: bar, epoch, foo" in result.output and "val_loss" in result.output
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    result = runner.invoke(app, ["doctor", str(empty)])
    assert result.exit_code == 2 and "no history" in result.output


# --- binclass train --tensorboard ------------------------------------------------------------------
def test_train_tensorboard_writes_the_history_as_events(tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    from binclass.api import train

    run = train(tiny_data, out=tmp_path / "run", model="seed", epochs=2, image_size=32, tensorboard=True)
    events = [p for p in run.path.iterdir() if p.name.startswith("events.out.tfevents.")]
    assert len(events) == 1
    tb = load_history(events[0])
    csv = load_history(run.path)
    assert [e["epoch"] for e in tb.epochs] == [e["epoch"] for e in csv.epochs] == [1, 2]
    for a, b in zip(tb.epochs, csv.epochs):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key
    assert [s["loss"] for s in tb.steps] == pytest.approx([s["loss"] for s in csv.steps], rel=1e-6)
    assert [s["step"] for s in tb.steps] == list(range(1, len(csv.steps) + 1))  # the global step
    again = train(tiny_data, out=tmp_path / "run", model="seed", epochs=1, image_size=32, overwrite=True)
    assert not [p for p in again.path.iterdir() if p.name.startswith("events.out.tfevents.")]


# --- files written by the real tools, kept as fixtures (scripts/log_fixtures.py writes them) ------------
def test_keras_fixtures_written_by_keras_read_alike():
    """Keras 3.15.1 on TensorFlow 2.21: model.fit with its TensorBoard callback (train/ + validation/,
    values as TensorFlow tensors), its CSVLogger, and history.history dumped as JSON."""
    keras_dir = FIXTURES / "keras"
    history = json.loads((keras_dir / "history.json").read_text())
    [tb] = load_histories(keras_dir / "tensorboard")
    csv_log = load_history(keras_dir / "training.log")
    dumped = load_history(keras_dir / "history.json")
    for h in (tb, csv_log, dumped):
        assert len(h.epochs) == len(history["loss"]) == 6
        assert [e["val_loss"] for e in h.epochs] == pytest.approx(history["val_loss"], rel=1e-6)
        assert [e["val_acc"] for e in h.epochs] == pytest.approx(history["val_accuracy"], rel=1e-6)
        assert [e["train_loss"] for e in h.epochs] == pytest.approx(history["loss"], rel=1e-6)
    assert not errors(doctor(keras_dir / "tensorboard"))  # a sound run


def test_ultralytics_results_csv_written_by_ultralytics():
    """Ultralytics 8.4.190 classify, 3 epochs on generated shapes: `epoch,time,train/loss,...`."""
    h = load_history(FIXTURES / "ultralytics" / "results.csv")
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3]
    assert [e["val_acc"] for e in h.epochs] == [0.5, 0.5, 0.5]
    assert h.epochs[0]["val_loss"] == pytest.approx(0.69315) and h.epochs[0]["lr"] == pytest.approx(0.0006668)
    assert "metric-argmax-single-output" not in finding_ids(
        doctor(FIXTURES / "ultralytics" / "results.csv")
    )  # a real 0.5
