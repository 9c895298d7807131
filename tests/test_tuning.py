"""binclass calibrate / threshold on a finished run, and the temperature and threshold applied by
predict, evaluate and export."""

import json
import shutil

import numpy as np
import pytest
from helpers import train_cli
from sklearn.metrics import brier_score_loss, recall_score
from typer.testing import CliRunner

from binclass.api import train
from binclass.calibration import logit, sigmoid
from binclass.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def calibrated(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tuning") / "run"
    return train(tiny_data, out=out, model="seed", epochs=3, image_size=32, calibrate=True, seed=0)


def test_train_calibrate_stores_a_temperature_that_predict_and_evaluate_apply(calibrated, tiny_data, tmp_path):
    meta = json.loads((calibrated.path / "model.json").read_text())
    t = meta["temperature"]
    assert t > 0 and meta["calibration"]["fitted_on"] == "validation"
    rows = [line.split(",") for line in (calibrated.path / "val_predictions.csv").read_text().splitlines()[1:]]
    y = np.array([meta["classes"].index(r[1]) for r in rows])
    z = logit(np.array([float(r[2]) for r in rows]))

    def nll(temperature):
        return float(np.mean(np.logaddexp(0, z / temperature) - y * z / temperature))

    assert nll(t) <= min(nll(1.0), nll(t * 1.1), nll(t / 1.1))  # the temperature minimizes the loss
    assert "calibrated: temperature" in (calibrated.path / "train.log").read_text()
    raw = tmp_path / "raw"
    shutil.copytree(calibrated.path, raw)
    plain = {k: v for k, v in meta.items() if k not in ("temperature", "calibration")}
    (raw / "model.json").write_text(json.dumps(plain))
    images = tiny_data / "validation"
    with_t = [p.prob for p in calibrated.predict(images)]
    without = [p.prob for p in __import__("binclass").load(raw).predict(images)]
    assert np.allclose(with_t, sigmoid(logit(np.array(without)) / t), atol=1e-5)
    result = runner.invoke(app, ["evaluate", str(calibrated.path), str(tiny_data)])
    assert result.exit_code == 0, result.output
    ev = json.loads(result.stdout)
    labels = [0 if "/" + ev["classes"][0] + "/" in str(p.path) else 1 for p in calibrated.predict(images)]
    assert ev["temperature"] == t and "optimistic" in ev["note"]
    assert ev["calibration"]["brier"] == pytest.approx(brier_score_loss(labels, with_t), abs=1e-6)
    assert "equal-width bins" in ev["calibration"]["ece_binning"]


def test_threshold_writes_only_when_asked(calibrated, tiny_data):
    before = json.loads((calibrated.path / "model.json").read_text())["threshold"]
    dry = runner.invoke(app, ["threshold", str(calibrated.path), "--for", "recall=0.9"])
    assert dry.exit_code == 0, dry.output
    out = json.loads(dry.stdout)
    assert out["at_threshold"]["recall"]["value"] >= 0.9 and "optimistic" in out["note"]
    assert json.loads((calibrated.path / "model.json").read_text())["threshold"] == before
    wrote = runner.invoke(app, ["threshold", str(calibrated.path), "--for", "recall=0.9", "--write"])
    assert wrote.exit_code == 0, wrote.output
    meta = json.loads((calibrated.path / "model.json").read_text())
    assert meta["threshold"] == json.loads(wrote.stdout)["at_threshold"]["threshold"]
    assert meta["threshold_provenance"]["for"] == "recall=0.9" and meta["threshold_provenance"]["previous"] == before
    printed = json.loads(wrote.stdout)["at_threshold"]
    # The threshold gives, through predict, evaluate and the API, exactly the counts `threshold` printed.
    ev = json.loads(runner.invoke(app, ["evaluate", str(calibrated.path), str(tiny_data)]).stdout)
    counts = printed["counts"]
    assert ev["confusion"] == [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]]
    assert calibrated.evaluate(tiny_data)["confusion"] == ev["confusion"]
    preds = list(calibrated.predict(tiny_data / "validation"))
    labels = [int(f"/{ev['classes'][1]}/" in str(p.path)) for p in preds]
    called = [int(p.label == ev["classes"][1]) for p in preds]
    assert recall_score(labels, called) == printed["recall"]["value"] >= 0.9
    # It sits between two validation images' probabilities, on none of them.
    assert all(p.prob != pytest.approx(meta["threshold"], abs=1e-6) for p in preds)
    bad = runner.invoke(app, ["threshold", str(calibrated.path), "--for", "recall=2"])
    assert bad.exit_code == 2 and "--for" in bad.output and len(bad.output.splitlines()) == 1


def test_export_divides_by_the_temperature(calibrated, tiny_data, tmp_path):
    pytest.importorskip("onnxruntime")
    from binclass.onnxpredict import OnnxPredictor, predict_onnx_files

    onnx = OnnxPredictor(calibrated.export(tmp_path / "m.onnx"))
    assert onnx.meta["temperature"] == json.loads((calibrated.path / "model.json").read_text())["temperature"]
    images = tiny_data / "validation"
    torch_probs = {str(p.path): p.prob for p in calibrated.predict(images)}
    onnx_probs = {str(row.path): row.prob for row in predict_onnx_files(onnx, [images])}
    assert torch_probs.keys() == onnx_probs.keys()
    assert max(abs(torch_probs[k] - onnx_probs[k]) for k in torch_probs) < 1e-4


def test_a_calibration_split_is_held_out_of_training_and_fitted_on(tiny_data, tmp_path):
    run = train(
        tiny_data, out=tmp_path / "split", model="seed", epochs=2, image_size=32, calibrate=True, calibration_split=0.2
    )
    rows = (run.path / "calibration_predictions.csv").read_text().splitlines()[1:]
    held = {line.split(",")[0] for line in rows}
    assert len(held) == 16  # 20% of each class's 40 training images
    log = (run.path / "train.log").read_text()
    assert "data: 64 train, 30 validation images" in log and "16 training images held out for calibration" in log
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["calibration"]["fitted_on"] == "calibration split" and meta["calibration"]["images"] == 16
    out = json.loads(runner.invoke(app, ["threshold", str(run.path), "--for", "balanced"]).stdout)
    assert out["fitted_on"] == "calibration split" and "stay honest" in out["note"]
    ev = json.loads(runner.invoke(app, ["evaluate", str(run.path), str(tiny_data)]).stdout)
    assert "note" not in ev  # nothing fitted on the validation images
    bad = train_cli(tiny_data, tmp_path / "bad", calibration_split=0.7)
    assert bad.exit_code == 2 and "--calibration-split" in bad.output
