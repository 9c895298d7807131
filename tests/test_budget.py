"""--time-budget: a run sized to end within a wall-clock budget, its schedule complete. The planning is
tested on injected timings; how close real runs end to their budget is measured in docs/benchmarks.md."""

from __future__ import annotations

import json
import math

import pytest

from binclass.config import TrainConfig, parse_duration
from binclass.engine.optim import warmup_cosine
from binclass.errors import BinclassError
from binclass.recipes.budget import (
    EPOCH_FIXED,
    FILL,
    FINETUNE_MAX,
    FINETUNE_MIN,
    REPORT_SECONDS,
    FinetuneCosts,
    plan_epochs,
    plan_finetune,
)
from binclass.recipes.train import fit
from binclass.run import history


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), (" 2M ", 120)])
def test_durations_read_as_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "-5m", "0", "5d", "inf"])
def test_a_bad_duration_is_one_clear_error(text):
    with pytest.raises(BinclassError, match="--time-budget .*: give a duration such as 90s, 10m or 1.5h"):
        parse_duration(text)


def test_the_plan_fills_what_is_left_and_never_drops_below_one_epoch():
    plan = plan_epochs(budget_seconds=100, elapsed=10, epoch_seconds=2.0)
    assert plan.epochs == math.floor(FILL * (90 - REPORT_SECONDS) / 2.0) and plan.left_seconds == 90
    assert plan_epochs(budget_seconds=10, elapsed=9, epoch_seconds=5.0).epochs == 1


def test_epochs_and_a_budget_together_are_refused(tiny_data, tmp_path):
    with pytest.raises(BinclassError, match="give --epochs or --time-budget, not both"):
        fit(TrainConfig(data_dir=tiny_data, out=tmp_path / "r", model="small", epochs=3, time_budget="1m"), log=print)
    assert not (tmp_path / "r").exists()


def test_the_fine_tuning_plan_fills_what_is_left_between_its_bounds():
    cfg = TrainConfig(data_dir="d", batch_size=32, epochs=15, augment="flip", tta=True)
    costs = FinetuneCosts(forward_seconds=0.01, step_seconds=0.5)
    # 1000 training, 200 validation images: the head's features take 0.01 s x (2 x 1000 + 2 x 200)
    # passes + 15 epochs x EPOCH_FIXED; an epoch of fine-tuning 32 steps x 0.5 s + 2 x 200 passes.
    head = 0.01 * 2400 + 15 * EPOCH_FIXED
    epoch = 32 * 0.5 + 0.01 * 400 + EPOCH_FIXED
    gallery = 0.5 * 32 / 32  # a Grad-CAM pass over 32 images, in batches of 32 steps' cost
    for budget, elapsed in ((60, 5), (120, 5), (200, 30), (1000, 10)):
        plan = plan_finetune(cfg, 1000, 200, costs, budget, elapsed)
        room = FILL * (budget - elapsed - REPORT_SECONDS - gallery - head)
        expected = min(FINETUNE_MAX, max(0, math.floor(room / epoch)))
        assert plan.epochs == (expected if expected >= FINETUNE_MIN else 0)
        assert plan.head_seconds == pytest.approx(head) and plan.epoch_seconds == pytest.approx(epoch)
    assert plan_finetune(cfg, 1000, 200, costs, 60, 5).epochs == 0  # one epoch fits: not worth its warm-up
    assert plan_finetune(cfg, 1000, 200, costs, 1000, 10).epochs == FINETUNE_MAX


def _timed_at(monkeypatch, epoch_seconds=None, costs=None):
    """Budget planning on fixed timings: what the run does with a plan, whatever the machine's speed."""
    from binclass.recipes import train

    if epoch_seconds is not None:
        monkeypatch.setattr(train, "seconds_per_epoch", lambda *args: epoch_seconds)
    if costs is not None:
        monkeypatch.setattr(train, "time_finetune", lambda *args: costs)


def test_a_budgeted_run_takes_the_planned_epochs_with_its_schedule_complete(tiny_data, tmp_path, monkeypatch):
    _timed_at(monkeypatch, epoch_seconds=4.0)  # a 30 s budget holds about 6 such epochs
    out = tmp_path / "budget"
    lines: list[str] = []
    fit(TrainConfig(data_dir=tiny_data, out=out, model="small", image_size=32, time_budget="30s"), log=lines.append)
    cfg = json.loads((out / "config.json").read_text())
    planned = [line for line in lines if line.startswith("time budget 30s:")]
    assert len(planned) == 1 and "about 4.00 s per epoch" in planned[0] and f"{cfg['epochs']} epochs" in planned[0]
    left = float(planned[0].split(": ")[1].split(" s left")[0])
    assert abs(cfg["epochs"] - FILL * (left - REPORT_SECONDS) / 4.0) <= 1.5  # the plan's floor, at the logged left
    epochs = [int(r["epoch"]) for r in history.read_epochs(out)]
    assert epochs == list(range(1, cfg["epochs"] + 1)) and cfg["epochs"] > 1
    # The learning rate of the last step is the cosine's value at the last step of the whole schedule.
    steps = history.read_steps(out)
    per_epoch = len(steps) // cfg["epochs"]
    total, warmup = cfg["epochs"] * per_epoch, round(cfg["warmup"] * per_epoch)
    assert steps[-1]["lr"] == pytest.approx(cfg["lr"] * warmup_cosine(total, warmup)(total - 1), rel=1e-6)
    assert cfg["warmup"] == pytest.approx(0.1 * cfg["epochs"])  # what follows the epochs followed them


def test_a_budget_turns_on_fine_tuning_only_when_it_holds_enough(tiny_data, tmp_path, monkeypatch):
    _timed_at(monkeypatch, costs=FinetuneCosts(forward_seconds=0.001, step_seconds=0.5))
    lines: list[str] = []
    fit(TrainConfig(data_dir=tiny_data, out=tmp_path / "short", time_budget="4s"), log=lines.append)
    assert json.loads((tmp_path / "short" / "config.json").read_text())["finetune"] == 0
    assert any(line.startswith("time budget 4s:") and "the head only" in line for line in lines)
    lines.clear()
    fit(TrainConfig(data_dir=tiny_data, out=tmp_path / "long", time_budget="1h"), log=lines.append)
    cfg = json.loads((tmp_path / "long" / "config.json").read_text())
    assert cfg["finetune"] == FINETUNE_MAX
    assert any(f"then {cfg['finetune']} epochs of fine-tuning" in line for line in lines)
    epochs = [int(r["epoch"]) for r in history.read_epochs(tmp_path / "long")]
    assert epochs == list(range(1, cfg["epochs"] + cfg["finetune"] + 1))  # the head's epochs, then fine-tuning's


def test_fine_tuning_and_a_budget_together_are_refused(tiny_data, tmp_path):
    with pytest.raises(BinclassError, match="give --finetune or --time-budget, not both"):
        fit(TrainConfig(data_dir=tiny_data, out=tmp_path / "r", finetune=2, time_budget="1m"), log=print)
    assert not (tmp_path / "r").exists()
