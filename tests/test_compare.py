import json

import pytest
from helpers import train_cli
from scipy.stats import binomtest
from typer.testing import CliRunner

from binclass.cli import app
from binclass.compare import mcnemar_exact

runner = CliRunner()


@pytest.mark.parametrize("b,c", [(0, 0), (0, 5), (3, 9), (10, 10), (40, 20), (1, 200), (150, 120)])
def test_mcnemar_exact_matches_a_two_sided_binomial_test(b, c):
    expected = 1.0 if b + c == 0 else binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_compare_two_runs(tiny_data, tmp_path):
    for name, lr in (("a", "0.003"), ("b", "1e-6")):
        result = train_cli(tiny_data, tmp_path / name, model="small", image_size=32, epochs=6, batch_size=16, lr=lr)
        assert result.exit_code == 0, result.output
    plot = tmp_path / "cmp.png"
    result = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    pair = data["pairs"][0]
    assert pair["common_images"] == 30 and plot.stat().st_size > 0
    acc = {r["run"]: r["accuracy"] for r in data["runs"]}
    # the accuracy difference is exactly the discordant counts' difference over the shared images
    assert acc[str(tmp_path / "a")] - acc[str(tmp_path / "b")] == pytest.approx(
        (pair["only_a_right"] - pair["only_b_right"]) / 30
    )
    assert pair["p_value"] == pytest.approx(mcnemar_exact(pair["only_a_right"], pair["only_b_right"]))
    assert pair["seed_noise_sd"] is None and pair["beyond_seed_noise"] is None  # no --seeds runs: spread unknown
    text = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(plot)])
    assert "seed-to-seed spread unknown" in text.output
    given = runner.invoke(
        app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(plot), "--seed-sd", "0"]
    )
    diff = acc[str(tmp_path / "a")] - acc[str(tmp_path / "b")]
    assert ("beyond seed-to-seed noise" in given.output) == (diff != 0)
    one = runner.invoke(app, ["compare", str(tmp_path / "a")])
    assert one.exit_code == 2 and "at least two" in one.output
