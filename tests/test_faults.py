"""Never lose a finished epoch: a deterministic run killed (SIGKILL) at any moment and resumed ends with
exactly the files of an uninterrupted run; a full disk is one clear error that leaves the last
checkpoint resumable; a live run's folder is refused to a second run; the terminal shows binclass's
lines only, and train.log keeps everything."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import helpers
import pytest
from helpers import child_command, train_cli
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from binclass.cli import app
from binclass.config import TrainConfig
from binclass.errors import BinclassError
from binclass.recipes.train import fit
from binclass.run import history
from binclass.run.files import LOCK_FILE, STATE_FILE, TRAIN_LOG

runner = CliRunner()
SETTINGS = dict(model="small", image_size=32, epochs=4, batch_size=16, augment="standard", scheduler="cosine",
                deterministic=True, precision="fp32", compile_optimizer="off")  # fmt: skip


def run_child(data: Path, out: Path, point: str, **changes) -> subprocess.CompletedProcess:
    """A run with SETTINGS (and changes) stopped at point ("none": run through): see tests/child_run.py."""
    return helpers.run_child(data, out, {**SETTINGS, **changes}, None if point == "none" else point)


def resume(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "binclass.cli", "train", "--resume", str(out)],
                          capture_output=True, text=True)  # fmt: skip


def outcome(run_dir: Path) -> dict:
    """What must not depend on interruptions: every history value but the timings, the weights, the
    validation predictions."""
    drop = ("seconds", "train_seconds")
    weights = {
        name: {k: v.tolist() for k, v in load_file(str(run_dir / name)).items()}
        for name in ("model.safetensors", "best.safetensors")
    }
    return {
        "metrics": [{k: v for k, v in r.items() if k not in drop} for r in history.read_epochs(run_dir)],
        "steps": history.read_steps(run_dir),
        "weights": weights,
        "predictions": (run_dir / "val_predictions.csv").read_text(),
        "model.json": {k: v for k, v in json.loads((run_dir / "model.json").read_text()).items()},
    }


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole") / "run"
    done = run_child(tiny_data, out, "none")
    assert done.returncode == 0, done.stderr
    assert not (out / LOCK_FILE).exists()
    return outcome(out)


def killed_and_resumed(tiny_data: Path, out: Path, point: str) -> tuple[bool, subprocess.CompletedProcess]:
    """Whether a checkpoint with its training state was on disk when the run was killed, and the resume."""
    killed = run_child(tiny_data, out, point)
    assert killed.returncode == -signal.SIGKILL, f"{point}: not reached ({killed.returncode}): {killed.stderr[-500:]}"
    had_state = (out / STATE_FILE).exists()
    again = resume(out)
    assert again.returncode == 0, f"{point}: {again.stderr[-800:]}"
    return had_state, again


# At least one point of each kind: decoding, inside an epoch, inside a checkpoint's write (the state's
# temporary file written but not renamed, then between the state and the history rows), the report.
QUICK_POINTS = ["decoded-train#1", "checkpoint-state-written#1", "checkpoint-state#2", "predictions#1"]
SWEEP_POINTS = QUICK_POINTS + [
    "decoded#1", "step:1:1", "step:2:3", "checkpoint-weights#2", "checkpoint-steps#3", "step:4:5",
    "checkpoint-weights#4", "checkpoint-state#4", "report#1",
]  # fmt: skip


@pytest.mark.parametrize("point", QUICK_POINTS)
def test_a_run_killed_and_resumed_equals_the_uninterrupted_run(tiny_data, tmp_path, uninterrupted, point):
    out = tmp_path / "run"
    had_state, again = killed_and_resumed(tiny_data, out, point)
    assert outcome(out) == uninterrupted
    assert not (out / LOCK_FILE).exists()
    assert "taking over the lock" in again.stdout  # the killed run's lock, recognised as stale
    if had_state:
        assert "resuming after epoch" in again.stdout
    else:  # killed while decoding, or before the first checkpoint's state was renamed into place
        assert "no epoch of this run was completed before it stopped: training from epoch 1" in again.stdout


@pytest.mark.slow
@pytest.mark.parametrize("point", SWEEP_POINTS)
def test_fault_sweep(tiny_data, tmp_path, uninterrupted, point):
    out = tmp_path / "run"
    killed_and_resumed(tiny_data, out, point)
    assert outcome(out) == uninterrupted and not (out / LOCK_FILE).exists()


def test_every_epoch_with_a_row_is_a_resume_point(tiny_data, tmp_path):
    # Killed inside epoch 3: every epoch with a row in metrics.csv is in the state on disk (epoch 2's
    # checkpoint may still have been in writing: then its row is not there yet, and the state has it only
    # if it was renamed into place), and the resume starts after the state's epoch, whatever the
    # checkpoint interval would have been before (it was 10 s).
    out = tmp_path / "run"
    killed = run_child(tiny_data, out, "step:3:2")
    assert killed.returncode == -signal.SIGKILL
    with safe_open(str(out / STATE_FILE), framework="pt") as f:
        saved = json.loads(f.metadata()["binclass_state"])["progress"]["epoch"]
    rows = [r["epoch"] for r in history.read_epochs(out)]
    assert saved in (1, 2) and rows in (list(range(1, saved + 1)), list(range(1, saved)))
    assert f"resuming after epoch {saved} of 4" in resume(out).stdout


def test_a_full_disk_is_one_error_and_the_last_checkpoint_stays_resumable(tiny_data, tmp_path, monkeypatch,
                                                                          uninterrupted):  # fmt: skip
    import binclass.run.state as state_module

    real, calls = state_module.save_file, []

    def half_then_full(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) < 3:
            return real(tensors, path, metadata=metadata)
        real(tensors, path + ".whole", metadata=metadata)  # half of the real bytes, then the disk is full
        data = Path(path + ".whole").read_bytes()
        Path(path + ".whole").unlink()
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(state_module, "save_file", half_then_full)
    out = tmp_path / "run"
    with pytest.raises(BinclassError) as failed:
        fit(TrainConfig(data_dir=tiny_data, out=out, **SETTINGS), log=lambda line: None)
    message = str(failed.value)
    assert str(out) in message and "No space left on device" in message and "epoch 2" in message
    assert "\n" not in message
    assert not list(out.glob("*.tmp")) and not (out / LOCK_FILE).exists()
    with safe_open(str(out / STATE_FILE), framework="pt") as f:  # the last complete checkpoint, whole
        assert json.loads(f.metadata()["binclass_state"])["progress"]["epoch"] == 2
    assert [r["epoch"] for r in history.read_epochs(out)] == [1, 2]
    assert "error: " in (out / TRAIN_LOG).read_text()
    monkeypatch.setattr(state_module, "save_file", real)
    again = runner.invoke(app, ["train", "--resume", str(out)])
    assert again.exit_code == 0, again.output
    assert "resuming after epoch 2 of 4" in again.output
    assert outcome(out) == uninterrupted


def test_the_cli_names_the_folder_when_it_cannot_be_written(tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = train_cli(tiny_data, blocker / "run")
    assert result.exit_code == 2 and str(blocker / "run") in result.output and "Traceback" not in result.output


def write_lock(run_dir: Path, pid: int, host: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": host, "since": "2026-12-01T00:00:00+00:00"}))


def test_a_live_runs_folder_is_refused_to_overwrite_and_resume(tiny_data, tmp_path):
    out = tmp_path / "run"
    (out).mkdir()
    (out / "metrics.csv").write_text("epoch\n1\n")
    (out / "config.json").write_text(json.dumps({"data_dir": str(tiny_data), "out": str(out), "model": "small"}))
    write_lock(out, os.getpid(), socket.gethostname())  # this test process: alive
    for args in (["train", str(tiny_data), "--out", str(out), "--overwrite"], ["train", "--resume", str(out)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "in use by a live run" in result.output and str(os.getpid()) in result.output
    assert (out / "metrics.csv").read_text() == "epoch\n1\n"  # nothing of the live run was touched
    write_lock(out, os.getpid(), "another-host")
    result = train_cli(tiny_data, out, overwrite=True)
    assert result.exit_code == 2 and "another-host" in result.output and "delete" in result.output


def test_a_dead_runs_lock_is_taken_over_saying_so(tiny_data, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "run"
    write_lock(out, gone.pid, socket.gethostname())
    result = train_cli(tiny_data, out, *cli_args(epochs=1))
    assert result.exit_code == 0, result.output
    assert f"taking over the lock of process {gone.pid}" in result.output and not (out / LOCK_FILE).exists()


def cli_args(**changes) -> list[str]:
    args = []
    for key, value in {**SETTINGS, **changes}.items():
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def test_a_second_run_on_a_running_folder_is_refused(tiny_data, tmp_path):
    out, go = tmp_path / "run", tmp_path / "go"
    child = subprocess.Popen(child_command(tiny_data, out, SETTINGS, wait=go), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not Path(f"{go}.ready").exists():
            assert child.poll() is None and time.monotonic() < deadline, "the first run ended before it waited"
            time.sleep(0.05)
        second = train_cli(tiny_data, out, "--overwrite", *cli_args(epochs=1))
        assert second.exit_code == 2 and "in use by a live run" in second.output
    finally:
        go.touch()
        child.wait(timeout=120)
    assert child.returncode == 0, child.stderr.read()
    assert [r["epoch"] for r in history.read_epochs(out)] == [1, 2, 3, 4]  # the first run, untouched


def test_the_terminal_shows_binclass_lines_and_train_log_keeps_everything(tiny_data, tmp_path):
    # The seed network at 150 px has 9.5M weights: its optimizer step is compiled on a CPU, and PyTorch's
    # compiler logs warnings of its own on the way.
    out = tmp_path / "run"
    args = ["--model", "seed", "--epochs", "1", "--batch-size", "40", "--compile-optimizer", "on"]
    cmd = [sys.executable, "-m", "binclass.cli", "train", str(tiny_data), "--out", str(out), *args]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == ""
    log = (out / TRAIN_LOG).read_text()
    for line in first.stdout.splitlines():
        assert line in log
    again = subprocess.run([sys.executable, "-m", "binclass.cli", "train", "--resume", str(out)],
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 0 and again.stderr.strip() == ""
    log = (out / TRAIN_LOG).read_text()
    assert log.count("== binclass train") == 2 and "resuming after epoch 1 of 1" in log


def test_a_resume_restores_rows_cut_short_by_a_crash(tiny_data, tmp_path, uninterrupted):
    # A crash while appending leaves half a line; the rows of the checkpoint's epoch come back from the state.
    out = tmp_path / "run"
    killed = run_child(tiny_data, out, "checkpoint-steps#2")
    assert killed.returncode == -signal.SIGKILL
    metrics = out / "metrics.csv"
    metrics.write_text(metrics.read_text() + "2,0.69")  # the start of epoch 2's row, then the crash
    assert resume(out).returncode == 0
    assert outcome(out) == uninterrupted
