"""binclass export (ONNX) and binclass predict FILE.onnx (onnxruntime, without PyTorch)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import train_cli
from typer.testing import CliRunner

from binclass.cli import app
from binclass.data.decode import decode_arrays
from binclass.data.scan import find_images
from binclass.export import META_KEYS
from binclass.predict import load_predictor, predict_paths

pytest.importorskip("onnxruntime")
runner = CliRunner()
TOLERANCE = 1e-4  # probabilities: the same float32 network, only the kernels' summation order differs


def _train(data: Path, out: Path, *args: str) -> Path:
    result = train_cli(data, out, "--compile-optimizer", "off", *args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    return {
        # small: batch norm, and test-time augmentation (the recipe's default) inside the graph
        "small": _train(tiny_data, root / "small", "--model", "small", "--epochs", "3", "--image-size", "40"),
        "seed": _train(tiny_data, root / "seed", "--model", "seed", "--epochs", "2", "--image-size", "40"),
    }


def parity(run_dir: Path, images: list[Path]) -> tuple[float, int]:
    """(largest |onnxruntime - PyTorch| probability, labels that differ) on the same decoded images."""
    from binclass.onnxpredict import OnnxPredictor, predict_onnx_files

    result = runner.invoke(app, ["export", str(run_dir), "--out", str(run_dir / "exported.onnx")])
    assert result.exit_code == 0, result.output
    torch_rows = list(predict_paths(load_predictor(run_dir), images))
    onnx_rows = list(predict_onnx_files(OnnxPredictor(run_dir / "exported.onnx"), images))
    assert [r[0] for r in onnx_rows] == [r[0] for r in torch_rows]
    diff = max(abs(a[1] - b[1]) for a, b in zip(torch_rows, onnx_rows))
    return diff, sum(a[2] != b[2] for a, b in zip(torch_rows, onnx_rows))


@pytest.mark.parametrize("model", ["small", "seed"])
def test_onnxruntime_gives_pytorchs_probabilities(runs, tiny_data, model):
    diff, differ = parity(runs[model], find_images([tiny_data / "validation"]))
    assert diff < TOLERANCE and differ == 0


def test_the_file_carries_model_json_and_a_dynamic_batch(runs, tiny_data):
    from binclass.onnxpredict import OnnxPredictor

    run_dir = runs["small"]
    assert runner.invoke(app, ["export", str(run_dir)]).exit_code == 0
    predictor = OnnxPredictor(run_dir / "model.onnx")
    meta = json.loads((run_dir / "model.json").read_text())
    assert set(META_KEYS) <= set(predictor.meta)
    assert predictor.meta["classes"] == meta["classes"] and predictor.meta["positive_class"] == meta["classes"][1]
    assert predictor.meta["image_size"] == meta["image_size"] and predictor.meta["threshold"] == meta["threshold"]
    assert predictor.meta["normalization"] == meta["normalization"] and predictor.meta["tta"] is True
    assert predictor.meta["opset"] == 17
    images, _, _ = decode_arrays(find_images([tiny_data / "validation"])[:7], meta["image_size"])
    whole = predictor.runtime.run(None, {"images": images})[0]
    assert whole.shape == (7,) and whole.dtype == np.float32
    one_by_one = np.concatenate([predictor.runtime.run(None, {"images": images[i : i + 1]})[0] for i in range(7)])
    assert np.abs(whole - one_by_one).max() < TOLERANCE


def test_predict_with_the_onnx_file_needs_no_pytorch_and_agrees_with_the_run_folder(runs, tiny_data):
    run_dir = runs["seed"]
    assert runner.invoke(app, ["export", str(run_dir)]).exit_code == 0
    code = (
        "import sys; from binclass.cli import app; "
        f"app(['predict', {str(run_dir / 'model.onnx')!r}, {str(tiny_data / 'validation')!r}], standalone_mode=False); "
        "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "no torch"
    from_onnx = list(csv.DictReader(io.StringIO(done.stdout)))
    from_run = list(
        csv.DictReader(io.StringIO(runner.invoke(app, ["predict", str(run_dir), str(tiny_data / "validation")]).stdout))
    )
    assert len(from_onnx) == 30 and [r["label"] for r in from_onnx] == [r["label"] for r in from_run]


def test_bad_input_is_one_line(runs, tmp_path, tiny_data):
    result = runner.invoke(app, ["export", str(runs["seed"]), "--out", str(tmp_path / "no" / "m.onnx")])
    assert result.exit_code == 2 and "does not exist" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["export", str(tmp_path)])
    assert result.exit_code == 2 and "model.json: not found" in result.output
    fake = tmp_path / "fake.onnx"
    fake.write_text("not a model")
    result = runner.invoke(app, ["predict", str(fake), str(tiny_data / "validation")])
    assert result.exit_code == 2 and "fake.onnx: not a model onnxruntime can load" in result.output
    assert fake.read_text() == "not a model"  # nothing the user had is changed
    assert runner.invoke(app, ["export", str(runs["seed"])]).exit_code == 0
    exported = runs["seed"] / "model.onnx"
    result = runner.invoke(app, ["predict", str(exported), str(tiny_data / "validation"), "--device", "cuda"])
    assert result.exit_code == 2 and "runs on the CPU; drop --device and --checkpoint" in result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, args",
    [
        ("seed", ["--epochs", "1", "--batch-size", "20", "--optimizer", "rmsprop", "--lr", "1e-4"]),
        ("small", ["--epochs", "1"]),
        ("efficientnet_lite0", ["--epochs", "2"]),
    ],
)
def test_onnx_parity_on_the_1000_validation_images(shared_data, tmp_path, model, args):
    run_dir = _train(shared_data, tmp_path / model, "--model", model, *args)
    diff, differ = parity(run_dir, find_images([shared_data / "validation"]))
    print(f"{model}: largest probability difference {diff:.2e}, labels that differ: {differ}")
    assert diff < TOLERANCE and differ == 0
