"""The report's gallery of the worst validation errors with Grad-CAM heatmaps, `binclass explain`,
and `binclass evaluate --errors N`."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from binclass.api import train
from binclass.cli import app

pytest.importorskip("pytorch_grad_cam")
runner = CliRunner()


@pytest.fixture(scope="module", params=["seed", "small", "efficientnet_lite0"])
def run(request, tiny_data, tmp_path_factory):
    extra = {"epochs": 2, "image_size": 32} if request.param != "efficientnet_lite0" else {"epochs": 2}
    return train(tiny_data, out=tmp_path_factory.mktemp(request.param) / "run", model=request.param, **extra)


def test_gallery_shows_the_worst_errors_with_heatmaps(run, tiny_data):
    gallery = json.loads((run.path / "gallery.json").read_text())
    with open(run.path / "val_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    negative = json.loads((run.path / "model.json").read_text())["classes"][0]
    wrong = [r for r in rows if r["true_label"] != r["pred_label"]]
    false_pos = [r for r in wrong if r["true_label"] == negative]
    assert len(gallery["false_positives"]) == min(len(false_pos), 16)
    assert len(gallery["false_negatives"]) == min(len(wrong) - len(false_pos), 16)
    shown = gallery["false_positives"] + gallery["false_negatives"]
    assert {e["path"] for e in shown} <= {r["path"] for r in wrong}
    for kind in ("false_positives", "false_negatives"):
        losses = [e["loss"] for e in gallery[kind]]
        assert losses == sorted(losses, reverse=True)
        for e in gallery[kind]:
            assert e["picture"] and e["heatmap"] and e["picture"] != e["heatmap"]
    report = (run.path / "report.html").read_text()
    assert "Most wrong validation images" in report and "Calibration" in report and "reliability diagram" in report
    assert len(report.encode()) < 3_000_000
    for e in shown:  # captions relative to the data folder, the full path on hover
        relative = str(Path(e["path"]).relative_to(tiny_data))
        assert f'<figcaption title="{e["path"]}">{relative}<br>' in report


def test_explain_writes_one_overlay_per_image(run, tiny_data, tmp_path):
    images = sorted((tiny_data / "validation").rglob("*.png"))[:4]
    result = runner.invoke(app, ["explain", str(run.path), *map(str, images), "--out", str(tmp_path / "cam")])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "cam").glob("*.png"))
    assert len(written) == 4
    size = json.loads((run.path / "model.json").read_text())["image_size"]
    overlay = np.asarray(Image.open(written[0]))
    assert overlay.shape == (size, size, 3) and overlay.std() > 0
    assert len((tmp_path / "cam" / "explained.csv").read_text().splitlines()) == 5


def test_evaluate_lists_the_worst_errors(run, tiny_data):
    result = runner.invoke(app, ["evaluate", str(run.path), str(tiny_data), "--errors", "3"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    fp, fn = out["errors"]["false_positives"], out["errors"]["false_negatives"]
    assert len(fp) <= 3 and len(fn) <= 3
    assert all(e["true_label"] == out["classes"][0] for e in fp) and all(
        e["true_label"] == out["classes"][1] for e in fn
    )
    assert [e["loss"] for e in fp] == sorted((e["loss"] for e in fp), reverse=True)
    assert out["confusion"][0][1] >= len(fp) and out["confusion"][1][0] >= len(fn)
    bad = runner.invoke(app, ["evaluate", str(run.path), str(tiny_data), "--errors", "-1"])
    assert bad.exit_code == 2
