"""Out-of-distribution scores: the k-th nearest training image's cosine distance, its threshold on the
validation images, and predict, evaluate, the API and the ONNX file reporting it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import runner, train_cli
from PIL import Image, ImageDraw

import binclass
from binclass import ood
from binclass.cli import app


def test_knn_scores_are_the_cosine_distance_to_the_kth_nearest_training_image():
    sklearn_neighbors = pytest.importorskip("sklearn.neighbors")
    g = torch.Generator().manual_seed(0)
    reference, queries = torch.randn(300, 16, generator=g), torch.randn(40, 16, generator=g)
    ours = ood.knn_scores(ood.unit(reference), queries, k=10).numpy()
    finder = sklearn_neighbors.NearestNeighbors(n_neighbors=10, metric="cosine").fit(reference.numpy())
    theirs = finder.kneighbors(queries.numpy())[0][:, -1]
    assert np.allclose(ours, theirs, atol=1e-5)


def test_the_threshold_accepts_the_stated_share_of_validation_images(monkeypatch):
    g = torch.Generator().manual_seed(1)
    train, val = torch.randn(500, 8, generator=g), torch.randn(200, 8, generator=g)
    reference, scores = ood.fit_reference(train, val)
    assert reference.accepts(scores).mean() == pytest.approx(ood.ACCEPT, abs=0.01)
    assert len(reference.features) == 500 and torch.allclose(reference.features.norm(dim=1), torch.ones(500))
    monkeypatch.setattr(ood, "MAX_REFERENCE", 100)  # a large training set keeps a seeded sample
    small, _ = ood.fit_reference(train, val, seed=3)
    again, _ = ood.fit_reference(train, val, seed=3)
    assert len(small.features) == 100 and torch.equal(small.features, again.features)


def _non_photos(folder: Path, count: int = 8) -> list[Path]:
    """Noise and typed text: images of neither class."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    made = []
    for i in range(count):
        noise = folder / f"noise_{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(noise)
        page = Image.new("RGB", (40, 40), "white")
        ImageDraw.Draw(page).text((1, 4 + 3 * i), f"page {i}\nline", fill="black")
        page.save(folder / f"text_{i}.png")
        made += [noise, folder / f"text_{i}.png"]
    return made


@pytest.fixture(scope="module")
def pretrained_run(tiny_data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ood") / "run"
    result = train_cli(tiny_data, run, image_size=64, epochs=2)
    assert result.exit_code == 0, result.output
    return run


def test_predict_flags_images_of_neither_class(pretrained_run, tiny_data, tmp_path):
    odd = _non_photos(tmp_path / "mixed" / "odd")
    result = runner.invoke(
        app, ["predict", str(pretrained_run), str(tmp_path / "mixed"), str(tiny_data / "validation")]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "path,prob,label,ood_score,in_distribution"
    rows = {Path(r.split(",")[0]): r.split(",") for r in lines[1:]}
    assert all(rows[p][4] == "false" for p in odd)  # every non-photo flagged
    shapes = [r for p, r in rows.items() if p not in odd]
    assert len(shapes) == 30 and sum(r[4] == "true" for r in shapes) >= 25
    unlike = sum(r[4] == "false" for r in rows.values())
    assert f"{unlike} of {len(rows)} images look unlike the training images" in result.stderr


def test_evaluate_the_api_and_the_onnx_file_carry_the_score(pretrained_run, tiny_data, tmp_path):
    odd = _non_photos(tmp_path / "odd", count=3)
    run = binclass.load(pretrained_run)
    predictions = run.predict([tiny_data / "validation", tmp_path / "odd"])
    assert all(p.ood_score is not None for p in predictions)
    assert [p.in_distribution for p in predictions if p.path in odd] == [False] * len(odd)
    result = json.loads(runner.invoke(app, ["evaluate", str(pretrained_run), str(tiny_data)]).stdout)
    shares = [p.in_distribution for p in predictions if p.path not in odd]  # the same 30 validation images
    assert result["n"] == 30 and result["ood"]["in_distribution"] == sum(shares)
    assert result["ood"]["in_distribution_share"] == pytest.approx(sum(shares) / 30)
    pytest.importorskip("onnxruntime")
    from binclass.onnxpredict import OnnxPredictor, predict_onnx_files

    exported = run.export(tmp_path / "m.onnx")
    onnx = OnnxPredictor(exported)
    assert onnx.ood_threshold == pytest.approx(ood.load_reference(pretrained_run).threshold)
    theirs = {row.path: row for row in predict_onnx_files(onnx, [tiny_data / "validation", tmp_path / "odd"])}
    for ours in predictions:
        assert abs(theirs[ours.path].ood_score - ours.ood_score) < 1e-4
        if abs(ours.ood_score - onnx.ood_threshold) > 1e-4:
            assert theirs[ours.path].in_distribution == ours.in_distribution


def test_a_run_without_a_reference_predicts_as_before(pretrained_run, tiny_data, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(pretrained_run, old)
    (old / "ood.safetensors").unlink()
    result = runner.invoke(app, ["predict", str(old), str(tiny_data / "validation")])
    assert result.exit_code == 0 and result.stdout.splitlines()[0] == "path,prob,label"


def test_a_from_scratch_run_keeps_the_features_of_the_weights_predict_loads(tiny_data, tmp_path):
    result = train_cli(tiny_data, tmp_path / "run", model="small", image_size=32, epochs=2)
    assert result.exit_code == 0, result.output
    reference = ood.load_reference(tmp_path / "run")
    assert reference is not None and reference.checkpoint == "last" and reference.features.shape[0] == 80
    from binclass.predict import load_predictor

    assert load_predictor(tmp_path / "run", "last").ood is not None
    assert load_predictor(tmp_path / "run", "best").ood is None  # another weights file: not its features
