import numpy as np
import pytest
from typer.testing import CliRunner

from binclass.cli import app
from binclass.lrfind import suggest

runner = CliRunner()


def test_suggests_the_steepest_fall_when_the_loss_falls():
    lrs = list(np.logspace(-6, 0, 61))
    log_lr = np.log10(lrs)
    losses = list(0.7 - 0.5 / (1 + np.exp(-(log_lr + 3) * 3)) + np.where(log_lr > -0.5, (log_lr + 0.5) * 4, 0))
    lr, edge, rule = suggest(lrs, losses)
    assert rule == "steepest fall of the loss"
    assert 10**-3.3 < lr < 10**-2.7  # the logistic's midpoint, 1e-3
    assert edge > 1e-1


def test_suggests_a_tenth_of_the_edge_when_the_loss_never_falls():
    lrs = list(np.logspace(-7, -2, 51))
    losses = [0.693 if lr < 1e-3 else 0.693 * (1 + 5 * (lr - 1e-3) / 1e-3) for lr in lrs]
    lr, edge, rule = suggest(lrs, losses)
    assert rule.startswith("a tenth")
    assert edge == pytest.approx(1e-3, rel=0.3) and lr == pytest.approx(edge / 10)


def test_lr_find_cli_on_generated_images(tiny_data, tmp_path):
    plot = tmp_path / "lr.png"
    result = runner.invoke(
        app,
        [
            "lr-find",
            str(tiny_data),
            "--model",
            "small",
            "--image-size",
            "32",
            "--batch-size",
            "16",
            "--steps",
            "60",
            "--plot",
            str(plot),
        ],
    )
    assert result.exit_code == 0, result.output
    assert plot.stat().st_size > 0
    suggested = float(result.output.split("suggested learning rate: ")[1].split(" ")[0])
    assert 1e-7 <= suggested <= 10
