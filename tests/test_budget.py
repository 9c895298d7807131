"""--time-budget: a from-scratch run sized to end within a wall-clock budget, its schedule complete."""

from __future__ import annotations

import json
import math
import time

import pytest

from binclass.config import TrainConfig, parse_duration
from binclass.engine.optim import warmup_cosine
from binclass.errors import BinclassError
from binclass.recipes.budget import FINETUNE_MAX, FINETUNE_MIN, plan_epochs
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
    assert plan.epochs == math.floor(0.98 * (90 - 2.0) / 2.0) and plan.left_seconds == 90
    assert plan_epochs(budget_seconds=10, elapsed=9, epoch_seconds=5.0).epochs == 1


def test_epochs_and_a_budget_together_are_refused(tiny_data, tmp_path):
    with pytest.raises(BinclassError, match="give --epochs or --time-budget, not both"):
        fit(TrainConfig(data_dir=tiny_data, out=tmp_path / "r", model="small", epochs=3, time_budget="1m"), log=print)
    assert not (tmp_path / "r").exists()


def test_a_budgeted_run_ends_within_its_budget_with_its_schedule_complete(tiny_data, tmp_path):
    budget = 15.0
    out = tmp_path / "budget"
    lines: list[str] = []
    started = time.perf_counter()
    fit(
        TrainConfig(data_dir=tiny_data, out=out, model="small", image_size=32, time_budget=f"{budget:g}s"),
        log=lines.append,
    )
    wall = time.perf_counter() - started
    assert wall <= 1.1 * budget, f"{wall:.1f} s for a {budget:g} s budget"
    assert wall >= 0.5 * budget  # the budget was used, not left idle
    cfg = json.loads((out / "config.json").read_text())
    epochs = [int(r["epoch"]) for r in history.read_epochs(out)]
    assert epochs == list(range(1, cfg["epochs"] + 1)) and cfg["epochs"] > 1
    assert any(line.startswith("time budget 15s:") and f"{cfg['epochs']} epochs" in line for line in lines)
    # The learning rate of the last step is the cosine's value at the last step of the whole schedule.
    steps = history.read_steps(out)
    per_epoch = len(steps) // cfg["epochs"]
    total, warmup = cfg["epochs"] * per_epoch, round(cfg["warmup"] * per_epoch)
    assert steps[-1]["lr"] == pytest.approx(cfg["lr"] * warmup_cosine(total, warmup)(total - 1), rel=1e-6)
    assert cfg["warmup"] == pytest.approx(0.1 * cfg["epochs"])  # what follows the epochs followed them


def test_a_budget_turns_on_fine_tuning_only_when_it_holds_enough(tiny_data, tmp_path):
    lines: list[str] = []
    fit(TrainConfig(data_dir=tiny_data, out=tmp_path / "short", time_budget="1s"), log=lines.append)
    assert json.loads((tmp_path / "short" / "config.json").read_text())["finetune"] == 0
    assert any(line.startswith("time budget 1s:") and "the head only" in line for line in lines)
    budget = 60.0
    lines.clear()
    started = time.perf_counter()
    fit(TrainConfig(data_dir=tiny_data, out=tmp_path / "long", time_budget=f"{budget:g}s"), log=lines.append)
    wall = time.perf_counter() - started
    cfg = json.loads((tmp_path / "long" / "config.json").read_text())
    assert FINETUNE_MIN <= cfg["finetune"] <= FINETUNE_MAX
    assert any(f"then {cfg['finetune']} epochs of fine-tuning" in line for line in lines)
    epochs = [int(r["epoch"]) for r in history.read_epochs(tmp_path / "long")]
    assert epochs == list(range(1, cfg["epochs"] + cfg["finetune"] + 1))  # the head's epochs, then fine-tuning's
    assert wall <= 1.1 * budget


def test_fine_tuning_and_a_budget_together_are_refused(tiny_data, tmp_path):
    with pytest.raises(BinclassError, match="give --finetune or --time-budget, not both"):
        fit(TrainConfig(data_dir=tiny_data, out=tmp_path / "r", finetune=2, time_budget="1m"), log=print)
    assert not (tmp_path / "r").exists()
