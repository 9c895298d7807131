"""Data-parallel training under torchrun: 2 CPU processes with gloo on a generated set."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import train_cli
from safetensors.torch import load_file
from typer.testing import CliRunner

from binclass.cli import app
from binclass.run import history

runner = CliRunner()
# SGD: a gradient off by the number of processes changes the very next step's loss (Adam and RMSprop
# would hide it: their steps do not scale with the gradient).
ARGS = ["--model", "seed", "--image-size", "40", "--epochs", "3", "--batch-size", "16", "--optimizer", "sgd",
        "--lr", "0.1", "--augment", "none", "--deterministic", "--compile-optimizer", "off"]  # fmt: skip
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(*args: str, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=timeout, env=environment)


@pytest.fixture(scope="module")
def two_processes(tiny_data, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("ddp") / "two"
    # tracked in MLflow where it is installed: one tracker run for the launch, not one per process
    tracked = ["--track", "mlflow"] if importlib.util.find_spec("mlflow") else []
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{out.parent / 'tracking.db'}"}
    done = torchrun("-m", "binclass", "train", str(tiny_data), "--out", str(out), *ARGS, *tracked, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_the_run_folder_is_complete_and_written_once(two_processes):
    out, done = two_processes
    for name in ("config.json", "metrics.csv", "steps.csv", "model.safetensors", "best.safetensors", "model.json",
                 "state.safetensors", "val_predictions.csv", "diagnosis.json", "report.html", "train.log"):  # fmt: skip
        assert (out / name).is_file(), name
    assert [int(r["epoch"]) for r in history.read_epochs(out)] == [1, 2, 3]
    assert [(int(r["epoch"]), int(r["step"])) for r in history.read_steps(out)] == [
        (e, s) for e in (1, 2, 3) for s in range(1, 6)
    ]  # 80 images, global batch 16: 5 steps per epoch
    assert sum(line.startswith("epoch ") for line in done.stdout.splitlines()) == 3  # only rank 0 prints
    log = (out / "train.log").read_text()
    assert log.count("== binclass train") == 1 and log.count("epoch   3/3") == 1
    assert json.loads((out / "config.json").read_text())["environment"]["processes"] == 2
    assert not (out / "train.lock").exists()


def test_a_tracked_launch_gives_one_mlflow_run(two_processes):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, _ = two_processes
    client = MlflowClient(f"sqlite:///{out.parent / 'tracking.db'}")
    runs = client.search_runs([client.get_experiment_by_name("binclass").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [int(m.step) for m in client.get_metric_history(runs[0].info.run_id, "val_acc")] == [1, 2, 3]
    assert runs[0].data.params["environment.processes"] == "2"


def test_validation_counts_every_image_once_as_evaluate_does(two_processes, tiny_data):
    out, _ = two_processes
    last = history.read_epochs(out)[-1]
    evaluation = json.loads(runner.invoke(app, ["evaluate", str(out), str(tiny_data)]).stdout)
    assert last["val_n"] == evaluation["n"] == 30
    assert last["val_acc"] == evaluation["accuracy"]
    with (out / "val_predictions.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 30


def test_two_processes_train_as_one_process_with_the_same_global_batch(two_processes, tiny_data, tmp_path):
    out, _ = two_processes
    result = train_cli(tiny_data, tmp_path / "one", *ARGS)
    assert result.exit_code == 0, result.output
    one, two = history.read_steps(tmp_path / "one"), history.read_steps(out)
    # Same weights, same global batch at step 1: only the summation order differs (per-rank sums).
    assert abs(one[0]["loss"] - two[0]["loss"]) < 1e-6
    # After that the two runs differ in the last bits of every sum (per-rank partial sums, gloo's
    # all-reduce, one thread per process against two), and the differences compound step by step:
    # measured at most 3e-5 over the first 5 steps and 4e-5 in the epoch losses. A gradient off by the
    # number of processes gave 1.2e-3 at step 3 and 9e-4 in epoch 2's loss: both bounds fail it.
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(one[:5], two[:5])) < 2e-4
    epochs = zip(history.read_epochs(tmp_path / "one"), history.read_epochs(out))
    assert max(abs(a["train_loss"] - b["train_loss"]) for a, b in epochs) < 5e-4


CHILD = """
import os, sys
from binclass.config import TrainConfig
from binclass.errors import BinclassError
from binclass.recipes.train import fit

data, out, rank, epoch, step, how = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]

def hook(e, s, total):
    if int(os.environ["RANK"]) == rank and (e, s) == (epoch, step):
        if how == "kill":
            os._exit(9)
        raise BinclassError(f"stopped on purpose at epoch {e}, step {s}")

cfg = TrainConfig(data_dir=data, out=out, model="seed", image_size=40, epochs=3, batch_size=16, optimizer="sgd",
                  lr=0.1, augment="none", deterministic=True, compile_optimizer="off")
try:
    fit(cfg, on_step=hook)
except BinclassError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def test_resume_after_a_kill_gives_the_uninterrupted_run(two_processes, tiny_data, tmp_path):
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    out = tmp_path / "killed"
    killed = torchrun(str(child), str(tiny_data), str(out), "0", "3", "2", "kill")
    assert killed.returncode != 0
    # Epoch 2's checkpoint may still be in writing when the kill lands: its rows then come with the resume.
    assert [int(r["epoch"]) for r in history.read_epochs(out)] in ([1], [1, 2])
    resumed = torchrun("-m", "binclass", "train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 1 of 3" in resumed.stdout or "resuming after epoch 2 of 3" in resumed.stdout
    whole, _ = two_processes
    drop = ("seconds", "train_seconds")
    rows = [{k: v for k, v in r.items() if k not in drop} for r in history.read_epochs(out)]
    assert rows == [{k: v for k, v in r.items() if k not in drop} for r in history.read_epochs(whole)]
    a, b = load_file(str(out / "model.safetensors")), load_file(str(whole / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_a_failing_process_ends_the_others_with_its_error(tiny_data, tmp_path):
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    # A rank left waiting in a collective would wait for the collective's own timeout (minutes): the
    # launch's bound (TimeoutExpired) fails the test then.
    failed = torchrun(str(child), str(tiny_data), str(tmp_path / "failed"), "1", "2", "1", "raise", timeout=120)
    assert failed.returncode != 0
    assert "error: stopped on purpose at epoch 2, step 1" in failed.stderr


def test_the_global_batch_must_give_every_process_an_image():
    from binclass.config import TrainConfig
    from binclass.errors import BinclassError
    from binclass.recipes.resolve import resolve

    cfg = TrainConfig(data_dir=".", model="seed", batch_size=3, device="cpu")
    assert resolve(cfg, world_size=3).environment.processes == 3
    with pytest.raises(BinclassError, match="--batch-size 3 is the global batch: give at least one image per process"):
        resolve(cfg, world_size=4)
