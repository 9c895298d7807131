"""--track mlflow and --track wandb: one tracker run per run, its metrics, settings, findings and files;
--resume continues it; a later export adds to it; bad trackers are one line before any image is read."""

from __future__ import annotations

import json
import socket

import pytest
from helpers import run_child, runner, train_cli

from binclass.cli import app

SETTINGS = dict(model="small", image_size=32, epochs=3, batch_size=16)


def test_mlflow_gets_one_run_that_resume_continues_and_export_adds_to(tiny_data, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'tracking.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the child process inherits it
    out = tmp_path / "run"
    killed = run_child(tiny_data, out, {**SETTINGS, "track": "mlflow", "experiment": "shapes"}, "checkpoint-steps#2")
    assert killed.returncode == -9, killed.stderr  # stopped after its second epoch
    resumed = runner.invoke(app, ["train", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("shapes")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # one run, continued, not two
    run = runs[0]
    assert json.loads((out / "tracking.json").read_text())["mlflow"]["run_id"] == run.info.run_id
    assert [int(m.step) for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2, 3]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == len(rows) - 1
    config = json.loads((out / "config.json").read_text())
    assert run.data.params["epochs"] == str(config["epochs"]) and run.data.params["model"] == "small"
    assert run.data.params["environment.device"] == config["environment"]["device"]
    steps = (out / "steps.csv").read_text().splitlines()
    assert len(client.get_metric_history(run.info.run_id, "step_loss")) == len(steps) - 1
    findings = json.loads((out / "diagnosis.json").read_text())["findings"]
    assert {f"doctor.{f['id']}" for f in findings} <= set(run.data.tags)
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.safetensors", "model.json", "report.html", "curves.png", "config.json"} <= files
    pytest.importorskip("onnx")
    exported = runner.invoke(app, ["export", str(out)])
    assert exported.exit_code == 0 and "added to MLflow run" in exported.output
    assert "model.onnx" in {a.path for a in client.list_artifacts(run.info.run_id)}
    calibrated = runner.invoke(app, ["calibrate", str(out)])
    assert calibrated.exit_code == 0 and "added to MLflow run" in calibrated.output
    temperature = json.loads((out / "model.json").read_text())["temperature"]
    logged = client.get_metric_history(run.info.run_id, "calibration_temperature")
    assert [m.value for m in logged] == [pytest.approx(temperature)]


def test_wandb_offline_writes_its_run_with_the_metrics(tiny_data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # no network here
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    result = train_cli(tiny_data, out, **{**SETTINGS, "track": "wandb", "experiment": "shapes"})
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "tracking.json").read_text())["wandb"]
    assert stored["logged_epochs"] == 3 and stored["project"] == "shapes"
    runs = list((out / "wandb").glob(f"offline-run-*-{stored['run_id']}"))
    assert len(runs) == 1
    import csv

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert stored["summary"]["val_acc"] == pytest.approx(float(rows[-1]["val_acc"]))
    # the run's record file holds every epoch's values (history items keep their JSON text)
    written = b"".join(path.read_bytes() for path in runs[0].glob("*.wandb"))
    assert all(json.dumps(float(row["val_loss"])).encode() in written for row in rows)


def test_a_tracker_that_cannot_work_is_one_line_before_any_image(tiny_data, tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cases = [(["--track", "nope"], "choose mlflow or wandb")]
    if __import__("importlib").util.find_spec("mlflow"):
        cases.append((["--track", "mlflow"], "cannot reach the tracking server"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    for args, says in cases:
        result = runner.invoke(app, ["train", str(tiny_data), "--out", str(tmp_path / "run"), *args])
        assert result.exit_code == 2 and says in result.output and len(result.output.splitlines()) == 1, result.output
        assert not (tmp_path / "run").exists()
    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)  # as without the extra
    result = train_cli(tiny_data, tmp_path / "run", track="mlflow")
    assert result.exit_code == 2 and "pip install 'binclass[mlflow]'" in result.output
