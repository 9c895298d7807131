"""The config: one place for every setting's default and help text, resolved once into a frozen object."""

import dataclasses

import click
import pytest
import typer

from binclass.cli import app
from binclass.config import TrainConfig, default_of, help_of
from binclass.recipes.resolve import resolve

NOT_OPTIONS = (
    "data_dir",
    "environment",
    "eval_batch_size",
    "momentum",
)  # an argument, facts, and library-only settings


def disagreements(command: click.Command) -> list[str]:
    """Training settings whose option is missing, or whose default or help text is not the config's."""
    options = {p.name: p for p in command.params}
    found = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in NOT_OPTIONS:
            continue
        param = options.get(f.name)
        if param is None:
            found.append(f"{f.name}: no option")
        elif param.default != default_of(f.name) or param.help != help_of(f.name):
            found.append(f"{f.name}: default {param.default!r}, help {param.help!r}")
    return found


def test_the_cli_takes_every_training_default_and_help_text_from_the_config():
    assert disagreements(typer.main.get_command(app).commands["train"]) == []


def test_a_cli_default_of_its_own_is_caught():
    other = typer.Typer()

    @other.command()
    def train(gamma: float = typer.Option(0.5, help=help_of("gamma")), x: int | None = None) -> None: ...

    @other.command()
    def unused() -> None: ...

    found = disagreements(typer.main.get_command(other).commands["train"])
    assert "gamma: default 0.5, help 'lr factor at each step decay'" in found and "lr: no option" in found


def test_a_resolved_config_is_frozen_complete_and_resolves_to_itself():
    cfg = resolve(TrainConfig(data_dir="d", model="small", device="cpu"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    unset = [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) is None]
    optional = {
        "positive",
        "cache_dir",
        "weights",
        "early_stop",
        "time_budget",
        "exclude",
        "track",
        "experiment",
    }  # optional by nature
    data_form = {"labels", "image_column", "label_column", "label_from_name", "val"}  # found from the data when unset
    assert set(unset) <= optional | data_form
    assert cfg.environment.device == "cpu" and cfg.precision in ("fp32", "bf16")
    assert resolve(cfg) == cfg
