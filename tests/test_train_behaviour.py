"""Training behaviour that needs a real (tiny) run: learning, seeding, early stop, val split."""

import contextlib
import json
import math
import re

import numpy as np
import pytest
import torch
from helpers import train_cli

from binclass.config import TrainConfig
from binclass.engine.optim import make_scheduler
from binclass.recipes.resolve import resolve
from binclass.recipes.train import fit
from binclass.run import history


def parse_closing_line(line: str) -> tuple[float, dict[str, float]]:
    m = re.search(r"\(([\d.]+)s since the start: (.*)\)$", line)
    assert m, line
    parts = dict(p.rsplit(" ", 1) for p in m.group(2).split(", "))
    return float(m.group(1)), {k: float(v.rstrip("s")) for k, v in parts.items()}


def _cfg(data, out, **kw):
    base = dict(
        data_dir=data,
        out=out,
        model="small",
        image_size=32,
        epochs=4,
        batch_size=16,
        lr=0.003,
        augment="flip",
    )
    base.update(kw)
    return TrainConfig(**base)


def test_learns_generated_shapes_and_is_reproducible(tiny_data, tmp_path):
    logs = []
    fit(_cfg(tiny_data, tmp_path / "a", epochs=8, seed=5), log=logs.append)
    fit(_cfg(tiny_data, tmp_path / "b", epochs=8, seed=5), log=lambda s: None)
    a, b = history.read_epochs(tmp_path / "a"), history.read_epochs(tmp_path / "b")
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]
    assert a[-1]["train_loss"] < a[0]["train_loss"]
    assert max(r["val_acc"] for r in a) >= 0.8  # chance is 0.5 on 30 images
    assert any(line.startswith("epoch   8/8") for line in logs)
    assert all(0 < r["train_seconds"] < r["seconds"] for r in a)  # the training pass, then validation
    total, parts = parse_closing_line(logs[-1])
    assert list(parts) == ["images", "setup", "training", "report"]
    assert abs(sum(parts.values()) - total) <= 0.05 * len(parts)  # each part is rounded to 0.1 s
    assert parts["training"] >= sum(r["seconds"] for r in a) - 0.05  # the epochs are inside "training"


def test_a_run_written_without_a_later_column_keeps_its_own_columns(tmp_path):
    old_columns = [c for c in history.METRIC_COLUMNS if c != "train_seconds"]
    row = {c: 1 for c in history.METRIC_COLUMNS} | {"epoch": 1, "val_loss": 0.5}
    (tmp_path / history.METRICS_FILE).write_text(",".join(old_columns) + "\n")  # as an older binclass began it
    history.append_epochs(tmp_path, [row])
    history.append_epochs(tmp_path, [row | {"epoch": 2}])
    rows = history.read_epochs(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2] and list(rows[0]) == old_columns
    assert rows[1]["val_loss"] == 0.5


def test_early_stop_and_val_split(tiny_data, tmp_path):
    # Two class folders only: validation is held out; an lr this high makes the loss stall quickly.
    fit(
        _cfg(tiny_data / "train", tmp_path / "r", epochs=30, lr=0.5, optimizer="sgd", early_stop=2, val_split=0.25),
        log=lambda s: None,
    )
    rows = history.read_epochs(tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "model.json").read_text())
    assert len(rows) < 30
    assert len(rows) == meta["best_epoch"] + 2
    assert rows[0]["val_n"] == 20 and rows[0]["train_n"] == 60


def test_cosine_is_stepped_per_batch():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = make_scheduler(opt, TrainConfig(data_dir=".", out=".", scheduler="cosine", epochs=2), steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.after_step()
    assert lrs[0] == 1.0 and all(x > y for x, y in zip(lrs, lrs[1:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_config_validation_and_round_trip(tmp_path):
    cfg = resolve(TrainConfig(data_dir="d", out="o", optimizer="rmsprop"))
    assert cfg.lr == 1e-4
    cfg.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == cfg
    from binclass.errors import BinclassError

    for bad in [dict(threshold=1.0), dict(epochs=0), dict(model="vgg"), dict(pos_weight="heavy"), dict(val_split=1.5)]:
        with pytest.raises(BinclassError):
            resolve(TrainConfig(data_dir="d", out="o", **bad))


def test_compiled_optimizer_step_matches_eager_and_follows_the_schedule():
    from binclass.engine.optim import make_optimizer, make_scheduler, step_function
    from binclass.models import build_model

    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = build_model("seed", 32)
        cfg = resolve(TrainConfig(data_dir=".", out=".", optimizer="rmsprop", lr=1e-3, scheduler="cosine", epochs=1))
        opt = make_optimizer(model, cfg, tensor_lr=compiled)
        schedule = make_scheduler(opt, cfg, steps_per_epoch=6)
        step = step_function(opt, compiled)
        lrs = []
        for i in range(6):
            torch.manual_seed(100 + i)
            opt.zero_grad()
            model(torch.rand(4, 3, 32, 32)).sum().backward()
            lrs.append(float(opt.param_groups[0]["lr"]))
            step()
            schedule.after_step()
        results.append((torch.cat([p.detach().flatten() for p in model.parameters()]), lrs))
    (eager, eager_lrs), (fused, fused_lrs) = results
    assert eager_lrs == pytest.approx(fused_lrs) and eager_lrs[0] > eager_lrs[-1]
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)


def test_compiled_step_falls_back_to_eager_when_compiling_fails(monkeypatch):
    from binclass.engine import optim as loop

    def broken(fn):
        def run():
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(loop.torch, "compile", broken)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = loop.step_function(opt, compiled=True)
    before = model.weight.detach().clone()
    for _ in range(2):
        opt.zero_grad()
        model(torch.ones(2, 3)).sum().backward()
        with pytest.warns(UserWarning, match="eager") if opt.state else contextlib.nullcontext():
            step()
    assert not torch.equal(before, model.weight) and opt.state


def test_pos_weight_auto_balances_the_classes():
    from binclass.recipes.common import resolve_pos_weight

    weight = resolve_pos_weight("auto", [0] * 30 + [1] * 10, torch.device("cpu"))
    assert float(weight) == pytest.approx(3.0)  # 30 negatives / 10 positives
    assert resolve_pos_weight("none", [0, 1], torch.device("cpu")) is None
    assert float(resolve_pos_weight("2.5", [0, 1], torch.device("cpu"))) == 2.5


def test_seeds_runs_each_seed_and_summarizes(tiny_data, tmp_path):
    import statistics

    from typer.testing import CliRunner

    from binclass.cli import app

    out = tmp_path / "rep"
    result = train_cli(tiny_data, out, model="seed", image_size=32, epochs=2, batch_size=16, seeds="0,1,2")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "seeds.json").read_text())
    accs = [history.read_epochs(out / f"seed-{s}")[-1]["val_acc"] for s in (0, 1, 2)]
    assert [r["val_acc"] for r in summary["seeds"]] == accs
    assert summary["mean_val_acc"] == pytest.approx(statistics.fmean(accs))
    assert summary["std_val_acc"] == pytest.approx(statistics.stdev(accs))
    assert json.loads((out / "seed-1" / "config.json").read_text())["seed"] == 1
    assert "over 3 seeds" in result.output
    assert (
        all(r["seconds"] > 0 for r in summary["seeds"])
        and f"in {summary['seeds'][2]['seconds']:.0f} s" in result.output
    )
    bad = train_cli(tiny_data, tmp_path / "x", seeds="a,b")
    assert bad.exit_code == 2 and "--seeds" in bad.output

    # The doctor and compare use that spread as the run-to-run noise.
    doc = CliRunner().invoke(app, ["doctor", str(out / "seed-1"), "--json"])
    spread = [f for f in json.loads(doc.stdout)["findings"] if f["id"] == "seed-spread"]
    assert len(spread) == 1 and spread[0]["evidence"]["sd"] == pytest.approx(statistics.stdev(accs), abs=1e-6)
    assert spread[0]["evidence"]["val_acc"] == pytest.approx(accs[1])
    cmp = CliRunner().invoke(
        app, ["compare", str(out / "seed-0"), str(out / "seed-2"), "--plot", str(tmp_path / "c.png"), "--json"]
    )
    pair = json.loads(cmp.stdout)["pairs"][0]
    noise = math.sqrt(2) * statistics.stdev(accs)
    assert pair["seed_noise_sd"] == pytest.approx(noise, abs=1e-9)
    assert pair["beyond_seed_noise"] == (abs(accs[0] - accs[2]) > 2 * noise)
    fixed = CliRunner().invoke(
        app,
        [
            "compare",
            str(out / "seed-0"),
            str(out / "seed-2"),
            "--plot",
            str(tmp_path / "c.png"),
            "--seed-sd",
            "3",
            "--json",
        ],
    )
    assert json.loads(fixed.stdout)["pairs"][0]["seed_noise_sd"] == pytest.approx(math.sqrt(2) * 0.03)
    whole = CliRunner().invoke(app, ["compare", str(out), str(out / "seed-0")])
    assert whole.exit_code == 2 and "seed-N" in whole.output


@pytest.mark.parametrize("every, writes", [(0.0, 5), (1e9, 1)])
def test_checkpoints_are_written_every_epoch_or_at_most_every_n_seconds(
    tiny_data, tmp_path, monkeypatch, every, writes
):
    import binclass.recipes.scratch as train_mod
    from binclass.run.weights import load_model

    saved = []
    real = train_mod.snapshot_state
    monkeypatch.setattr(train_mod, "snapshot_state", lambda *a: saved.append(a[4]["epoch"]) or real(*a))
    out = tmp_path / "r"
    fit(_cfg(tiny_data, out, epochs=5, save_every=every), log=lambda s: None)
    assert len(saved) == writes and saved[-1] == 5  # the last epoch is always saved
    meta = json.loads((out / "model.json").read_text())
    assert meta["epoch"] == 5 and (out / "best.safetensors").exists()
    rows = history.read_epochs(out)
    best_epoch = min(rows, key=lambda r: r["val_loss"])["epoch"]
    assert meta["best_epoch"] == best_epoch
    # best.safetensors holds the weights of that epoch, also when it was kept in memory until the end
    model, _ = load_model(out, "best")
    from binclass.data.scan import scan_dataset
    from binclass.data.sources import make_source
    from binclass.engine.loop import evaluate

    layout = scan_dataset(tiny_data)
    src, *_ = make_source(layout.val.paths, 32, "memory", torch.device("cpu"), 1)
    ev = evaluate(
        model,
        src,
        np.asarray(layout.val.labels),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        threshold=0.5,
        batch_size=64,
        device=torch.device("cpu"),
        tta=True,
    )
    assert ev.metrics["loss"] == pytest.approx(rows[best_epoch - 1]["val_loss"], rel=1e-5)


def test_training_doctor_sees_exactly_what_the_files_say(tiny_data, tmp_path):
    # The doctor inside training keeps the appended rows in memory; `binclass doctor RUN` reads the files.
    from binclass.doctor.diagnosis import doctor, read_diagnosis
    from binclass.doctor.findings import sort_findings

    out = tmp_path / "r"
    fit(_cfg(tiny_data, out, epochs=6, lr=0.5, optimizer="sgd", save_every=1e9), log=lambda s: None)
    from_files = [f.to_dict() for f in sort_findings(doctor(out))]
    assert from_files and read_diagnosis(out) == json.loads(json.dumps(from_files))


def test_an_epoch_keeps_no_new_tensor_per_step():
    """Per-step values are written into tensors made once per epoch. A new 0-d tensor kept per step
    left hundreds of small blocks scattered through the kept heap (binclass.allocator): on the
    cats-and-dogs set the heap of a seed run grew 666 -> 826 MB within one epoch, against a flat 645 MB
    with per-epoch tensors."""
    import gc

    from binclass.models.seed import SeedNet

    torch.manual_seed(0)
    model = SeedNet(32)
    n, batch = 200, 10
    live: list[int] = []

    def count(done: int, total: int) -> None:
        live.append(sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects()))

    stats = _epoch_on_noise(model, torch.optim.RMSprop(model.parameters(), lr=1e-4), n, batch, progress=count)
    assert len(live) == n // batch == len(stats.steps)
    assert live[-1] == live[1], live  # from the second step (the first creates the optimizer's state)
    assert all(math.isfinite(s["loss"]) for s in stats.steps)


@pytest.mark.parametrize("frozen", [False, True])
def test_frozen_norms_keep_batch_norm_statistics(frozen):
    """Fine-tuning's frozen_norms: batch norm normalizes with its running statistics and keeps them."""
    from binclass.models import build_model

    torch.manual_seed(0)
    model = build_model("small", 32, width=8)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in norms]
    _epoch_on_noise(model, torch.optim.SGD(model.parameters(), lr=1e-3), 40, 10, frozen_norms=frozen)
    unchanged = all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    assert unchanged == frozen
    assert model.training and all(not m.training for m in norms) == frozen


def _epoch_on_noise(model, optimizer, n: int, batch: int, **options):
    """One train_one_epoch over n random 32 px images with alternating labels."""
    from binclass.data.sources import TensorSource
    from binclass.engine.loop import train_one_epoch
    from binclass.engine.optim import Schedule

    return train_one_epoch(
        model,
        TensorSource(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)),
        (torch.arange(n) % 2).float(),
        inputs=lambda b: b.float() / 255,
        optimizer=optimizer,
        schedule=Schedule(None, True),
        batch_size=batch,
        threshold=0.5,
        pos_weight=None,
        shuffle_gen=torch.Generator().manual_seed(0),
        epoch=1,
        **options,
    )
