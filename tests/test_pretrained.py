"""Pretrained backbones offline: the packaged Lite0 weights are right, timm models load local weights,
and nothing is downloaded (HF_HUB_OFFLINE=1)."""

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import train_cli
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from binclass.cli import app
from binclass.errors import BinclassError
from binclass.models import normalization
from binclass.models.pretrained import lite0_imagenet, map_by_order
from binclass.run import history

runner = CliRunner()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_packaged_lite0_weights_classify_chelsea_as_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    model = lite0_imagenet()
    mean, std = normalization("efficientnet_lite0")
    img = np.asarray(Image.fromarray(skimage_data.chelsea()).resize((224, 224), Image.BILINEAR), np.float32) / 255
    x = (torch.from_numpy(img).permute(2, 0, 1)[None] - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
        :, None, None
    ]
    with torch.no_grad():
        top = int(model(x).argmax(1))
    assert 281 <= top <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_weights_map_by_order_and_shapes_are_verified():
    target = {"a.weight": torch.zeros(2, 3), "bn.num_batches_tracked": torch.zeros(()), "b.bias": torch.zeros(4)}
    mapped = map_by_order({"_x": torch.ones(2, 3), "_y": torch.ones(4)}, target, "w.pth")
    assert set(mapped) == {"a.weight", "b.bias"}
    with pytest.raises(BinclassError, match="shape"):
        map_by_order({"_x": torch.ones(3, 2), "_y": torch.ones(4)}, target, "w.pth")
    with pytest.raises(BinclassError, match="tensors"):
        map_by_order({"_x": torch.ones(2, 3)}, target, "w.pth")


def test_timm_model_offline_needs_weights_file(tiny_data, tmp_path):
    result = train_cli(tiny_data, tmp_path / "r", model="timm:test_resnet")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "--weights FILE" in result.output  # one line, before any decoding
    assert "Traceback" not in result.output


def test_timm_model_with_local_weights_trains_and_predicts(tiny_data, tmp_path):
    import timm

    donor = timm.create_model("test_resnet", pretrained=False)
    weights = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(weights))
    out = tmp_path / "r"
    result = train_cli(tiny_data, out, model="timm:test_resnet", weights=weights, image_size=32, epochs=2)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "model.json").read_text())["architecture"] == "timm:test_resnet"
    closing = [line for line in result.output.splitlines() if "since the start" in line]
    phases = r"since the start: model [\d.]+s, images [\d.]+s, training [\d.]+s, report [\d.]+s\)$"
    assert len(closing) == 1 and re.search(phases, closing[0]), closing


def test_lite0_run_folder_and_predict_agree(tiny_data, tmp_path):
    out = tmp_path / "lite"
    result = train_cli(tiny_data, out, model="efficientnet_lite0", image_size=64, epochs=3, tta=True)
    assert result.exit_code == 0, result.output
    assert "features:" in result.output
    last = history.read_epochs(out)[-1]
    assert last["train_n"] == 80 and last["val_n"] == 30
    assert last["val_acc"] >= 0.9  # ImageNet features separate circles from squares at once
    pred = runner.invoke(app, ["predict", str(out), str(tiny_data / "validation")])
    assert pred.exit_code == 0, pred.output
    rows = list(csv.DictReader(io.StringIO(pred.stdout)))
    assert sum(r["label"] == Path(r["path"]).parent.name for r in rows) / len(rows) == last["val_acc"]
    with (out / "val_predictions.csv").open() as f:
        during = {r["path"]: float(r["prob"]) for r in csv.DictReader(f)}
    assert max(abs(during[r["path"]] - float(r["prob"])) for r in rows) < 1e-5
    evaluation = json.loads(runner.invoke(app, ["evaluate", str(out), str(tiny_data)]).stdout)
    assert evaluation["accuracy"] == last["val_acc"]


def test_finetune_keeps_the_better_model_and_predict_uses_it(tiny_data, tmp_path):
    out = tmp_path / "ft"
    result = train_cli(tiny_data, out, model="efficientnet_lite0", image_size=64, epochs=2, finetune=1, batch_size=16)
    assert result.exit_code == 0, result.output
    rows = history.read_epochs(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    meta = json.loads((out / "model.json").read_text())
    assert meta["default_checkpoint"] == "best" and meta["kept"] in ("head only", "fine-tuned")
    best = next(r for r in rows if r["epoch"] == meta["best_epoch"])
    assert best["val_loss"] == min(r["val_loss"] for r in rows)
    evaluation = json.loads(runner.invoke(app, ["evaluate", str(out), str(tiny_data)]).stdout)
    assert evaluation["accuracy"] == best["val_acc"]
    assert evaluation["loss"] == pytest.approx(best["val_loss"], abs=1e-5)


def test_finetune_follows_optimizer_augment_early_stop_and_save_every(tiny_data, tmp_path, monkeypatch):
    import binclass.recipes.pretrained as recipe
    from binclass.engine.loop import Evaluation
    from binclass.run.checkpoints import Checkpoints

    optimizers, modes, writes = [], [], []
    real_make, real_augment, real_evaluate, real_write = (
        recipe.make_optimizer,
        recipe.augment_batch,
        recipe.evaluate,
        Checkpoints.write,
    )

    def make_optimizer(model, cfg, **kw):
        optimizer = real_make(model, cfg, **kw)
        optimizers.append((type(optimizer).__name__, cfg.lr))
        return optimizer

    def evaluate(*args, **kw):  # every fine-tuned model scores worse than the head: early stop must end it
        ev = real_evaluate(*args, **kw)
        return Evaluation({**ev.metrics, "loss": 100.0 + len(modes)}, ev.logits, ev.probs)

    monkeypatch.setattr(recipe, "make_optimizer", make_optimizer)
    monkeypatch.setattr(recipe, "augment_batch", lambda x, mode, gen: modes.append(mode) or real_augment(x, mode, gen))
    monkeypatch.setattr(recipe, "evaluate", evaluate)
    monkeypatch.setattr(
        Checkpoints, "write", lambda self, model, epoch, *a: writes.append(epoch) or real_write(self, model, epoch, *a)
    )
    out = tmp_path / "ft"
    result = train_cli(
        tiny_data,
        out,
        model="efficientnet_lite0",
        image_size=64,
        epochs=2,
        finetune=4,
        batch_size=16,
        optimizer="sgd",
        lr=0.01,
        augment="none",
        early_stop=2,
        save_every="1e9",
    )
    assert result.exit_code == 0, result.output
    assert optimizers == [("SGD", 0.01), ("SGD", pytest.approx(0.001))]  # the head's, then the fine-tune's at a tenth
    assert modes and set(modes) == {"none"}
    assert [r["epoch"] for r in history.read_epochs(out)] == [1, 2, 3, 4]  # two of four fine-tune epochs, then stop
    assert writes == [2, 4]  # the end of each phase only: --save-every 1e9
    meta = json.loads((out / "model.json").read_text())
    assert meta["kept"] == "head only" and meta["best_epoch"] in (1, 2) and meta["epoch"] == 4


def test_the_shortest_command_trains_the_pretrained_backbone_and_says_why(tiny_data, tmp_path):
    from binclass.config import TrainConfig
    from binclass.recipes.defaults import describe_choice
    from binclass.recipes.resolve import resolve

    out = tmp_path / "default"
    result = train_cli(tiny_data, out, epochs=2)
    assert result.exit_code == 0, result.output
    data, first = result.output.splitlines()[:2]  # the data's form, then the model's line
    assert data.startswith("data: ") and "read as class folders" in data
    assert first.startswith("model: efficientnet_lite0 (pretrained") and "the default" in first
    assert "--model small" in first and "--model seed" in first  # how to choose another
    assert json.loads((out / "config.json").read_text())["model"] == "efficientnet_lite0"
    small = resolve(TrainConfig(data_dir=".", model="small", device="cpu"))
    assert describe_choice(small, chosen=True).startswith("model: small (from scratch: sgd lr 0.1, 90 epochs at 80 px")
