"""The from-scratch recipe's parts: defaults per model and device, warm-up + cosine, label smoothing,
the weight average, and the crop augmentation."""

import math

import pytest
import torch

from binclass.config import TrainConfig
from binclass.data.augment import augment_batch
from binclass.engine.ema import WeightAverage
from binclass.engine.optim import make_scheduler, warmup_cosine
from binclass.errors import BinclassError
from binclass.recipes.defaults import SMALL, SMALL_BY_DEVICE, recipe_defaults, recipe_for
from binclass.recipes.resolve import resolve, validate
from binclass.recipes.train import fit


def test_small_defaults_fill_only_what_the_user_left_unset():
    cfg = resolve(TrainConfig(data_dir="d", out="o", model="small", device="cpu"))
    cpu = SMALL_BY_DEVICE["cpu"]
    assert (cfg.image_size, cfg.epochs) == (cpu["image_size"], cpu["epochs"])
    assert (cfg.optimizer, cfg.lr, cfg.augment, cfg.tta) == (SMALL["optimizer"], SMALL["lr"], SMALL["augment"], True)
    assert cfg.warmup == pytest.approx(0.1 * cfg.epochs) and cfg.ema == pytest.approx(0.05 * cfg.epochs)
    unset = TrainConfig(data_dir="d", out="o", model="small")
    gpu = unset.replace(**recipe_defaults(unset, "cuda"))
    assert (gpu.image_size, gpu.epochs) == (SMALL_BY_DEVICE["cuda"]["image_size"], SMALL_BY_DEVICE["cuda"]["epochs"])
    mine = resolve(
        TrainConfig(
            data_dir="d", out="o", model="small", device="cpu", epochs=20, optimizer="adamw", ema=1.5, tta=False
        )
    )
    assert (mine.epochs, mine.warmup, mine.ema, mine.tta) == (20, 2.0, 1.5, False)
    assert mine.lr == 1e-3  # the recipe's SGD rate does not carry over to another optimizer


def test_other_models_keep_the_generic_defaults():
    cfg = resolve(TrainConfig(data_dir="d", out="o", model="seed", device="cpu"))
    assert (cfg.epochs, cfg.optimizer, cfg.label_smoothing, cfg.ema, cfg.tta, cfg.image_size) == (
        15,
        "adamw",
        0.0,
        0.0,
        False,
        150,
    )
    assert recipe_for("seed", "cuda") == recipe_for("seed", "cpu") and cfg.augment == "flip"


def test_a_pretrained_head_trains_without_mirror_passes_unless_fine_tuned_or_asked():
    head = resolve(TrainConfig(data_dir="d", out="o", device="cpu"))
    assert (head.model, head.augment) == ("efficientnet_lite0", "none")
    assert resolve(TrainConfig(data_dir="d", out="o", device="cpu", finetune=2)).augment == "flip"
    assert resolve(TrainConfig(data_dir="d", out="o", device="cpu", augment="flip")).augment == "flip"


def test_saved_config_is_complete_and_reloads_unchanged(tmp_path):
    cfg = resolve(TrainConfig(data_dir="d", out="o", model="small", device="cpu"))
    cfg.save(tmp_path / "c.json")
    again = TrainConfig.load(tmp_path / "c.json")
    assert again == cfg and resolve(again) == cfg


def test_warmup_then_cosine_to_zero():
    f = warmup_cosine(total_steps=100, warmup_steps=10)
    rise = [f(t) for t in range(10)]
    assert all(a < b for a, b in zip(rise, rise[1:])) and rise[0] < 0.2
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.2)
    cfg = TrainConfig(data_dir=".", out=".", scheduler="cosine", epochs=4, warmup=1.0)
    schedule = make_scheduler(opt, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.after_step()
    assert lrs[:6] == pytest.approx([0.2 * (t + 1) / 6 for t in range(5)] + [0.2])
    assert max(lrs) == pytest.approx(0.2) and lrs[-1] < 0.01


def test_weight_average_follows_its_half_life():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightAverage(model, half_life_steps=50.0)
    decay = 0.5 ** (1 / 50)
    expected = [p.detach().clone() for p in model.state_dict().values()]
    for step in range(1, 200):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(8, 3))  # train mode: batch norm updates its running statistics
        ema.update()
        d = min(decay, (1 + step) / (10 + step))
        expected = [
            e.lerp(v, 1 - d) if e.is_floating_point() else v.clone()
            for e, v in zip(expected, model.state_dict().values())
        ]
    got = list(ema.model.state_dict().values())
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)
    assert not torch.equal(got[0], model.state_dict()["0.weight"])  # an average, not a copy
    assert all(not p.requires_grad for p in ema.model.parameters())


def test_crop_zooms_and_shifts_each_image_differently_and_is_seeded():
    x = torch.rand(1, 3, 32, 32).expand(16, -1, -1, -1).contiguous()
    a = augment_batch(x, "crop", torch.Generator().manual_seed(3))
    b = augment_batch(x, "crop", torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and torch.isfinite(a).all()
    assert len({tuple(img.flatten()[:40].tolist()) for img in a}) == 16
    # no rotation: a horizontal gradient stays constant along every column after the crop
    ramp = torch.linspace(0, 1, 32).view(1, 1, 32, 1).expand(8, 3, 32, 32).contiguous()
    out = augment_batch(ramp, "crop", torch.Generator().manual_seed(4))
    assert (out - out[..., :1]).abs().max() < 1e-5


@pytest.mark.parametrize(
    ("images", "batch", "lr"),
    [(100, 16, 0.025), (250, 16, 0.025), (500, 16, 0.025), (1000, 32, 0.05), (2000, 64, 0.1), (50000, 64, 0.1)],
)
def test_small_recipe_sizes_batch_and_rate_by_the_training_images(images, batch, lr):
    cfg = resolve(TrainConfig(data_dir="d", out="o", model="small", device="cpu"), train_images=images)
    assert (cfg.batch_size, cfg.lr) == (batch, pytest.approx(lr))
    steps_per_epoch = math.ceil(images / cfg.batch_size)
    assert not 250 <= images <= 2000 or 16 <= steps_per_epoch <= 32  # many steps per epoch at every size
    assert cfg.warmup == pytest.approx(0.1 * cfg.epochs)  # a tenth of the steps, whatever their number


def test_sizing_keeps_the_2000_image_recipe_and_what_the_user_set():
    unsized = resolve(TrainConfig(data_dir="d", out="o", model="small", device="cpu"))
    assert resolve(TrainConfig(data_dir="d", out="o", model="small", device="cpu"), train_images=2000) == unsized
    mine = resolve(TrainConfig(data_dir="d", out="o", model="small", device="cpu", batch_size=128), train_images=250)
    assert (mine.batch_size, mine.lr) == (128, pytest.approx(0.2))  # the recipe's rate per image
    both = resolve(TrainConfig(data_dir="d", out="o", model="small", device="cpu", lr=0.3), train_images=250)
    assert (both.batch_size, both.lr) == (16, 0.3)
    seed = resolve(TrainConfig(data_dir="d", out="o", model="seed", device="cpu"), train_images=250)
    assert seed == resolve(TrainConfig(data_dir="d", out="o", model="seed", device="cpu"))


@pytest.mark.parametrize(
    "settings, processes, resume, message",
    [
        ({"model": "small", "epochs": 3, "time_budget": "1m"}, 1, False, "give --epochs or --time-budget, not both"),
        ({"finetune": 2, "time_budget": "1m"}, 1, False, "give --finetune or --time-budget, not both"),
        ({"model": "small", "time_budget": "1m"}, 2, False, "--time-budget sizes a run on one process"),
        ({}, 2, False, "the pretrained recipe trains on one process"),
        ({}, 1, True, "--resume is for the from-scratch models"),
        ({"cuda_graphs": "on"}, 1, False, "--cuda-graphs is for the from-scratch models"),
        ({"model": "small", "cuda_graphs": "on"}, 2, False, "--cuda-graphs on is for one process"),
        ({"model": "resnet"}, 1, False, "--model 'resnet' is not one of"),
        ({"model": "small", "warmup": 5.0, "epochs": 3}, 1, False, "--warmup must be between 0 and --epochs"),
    ],
)
def test_validate_refuses_what_cannot_make_a_run_before_any_file_is_read(settings, processes, resume, message):
    with pytest.raises(BinclassError, match=message):
        validate(TrainConfig(data_dir="/no/such/folder", **settings), processes, resume)


def test_validate_takes_a_config_with_its_recipe_settings_unset():
    validate(TrainConfig(data_dir="/no/such/folder"))  # None everywhere the recipe decides: no error
    validate(TrainConfig(data_dir="/no/such/folder", model="small", epochs=3, time_budget="1m"), resume=True)


@pytest.mark.parametrize("budget", [None, "30s"])
def test_a_run_resolves_its_config_once_and_a_budgeted_run_once_more(tiny_data, tmp_path, monkeypatch, budget):
    from binclass.recipes import train as train_module

    calls = []
    real = train_module.resolve
    monkeypatch.setattr(train_module, "resolve", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(train_module, "seconds_per_epoch", lambda *args: 10.0)  # a budget of 2 epochs or so
    cfg = TrainConfig(data_dir=tiny_data, out=tmp_path / "r", model="seed", image_size=32, time_budget=budget)
    fit(cfg if budget else cfg.replace(epochs=1), log=lambda line: None)
    assert len(calls) == (2 if budget else 1)
