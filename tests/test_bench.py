import math

import pytest
import torch

from binclass.devtools.bench import Row, _run, bench_ratios, floor_epoch_seconds, render, render_scale, run_bench
from binclass.errors import BinclassError


def test_child_peak_memory_is_measured_per_process():
    _, small, _ = _run(["json.tool", "--help"])
    _, big, out = _run(
        ["binclass.devtools.bench", "--floor", "seed", "64", "100", "1", "50", "cpu", "fp32", "0", "0", "0"]
    )
    assert float(out.strip()) > 0
    assert small < 100  # MB: a bare interpreter, not the parent's resident size carried over
    assert big - small > 150  # torch itself is several hundred MB resident


def test_floor_runs_and_reports_seconds():
    seconds = floor_epoch_seconds("seed", 32, 40, 1, 20, "cpu", "fp32", True)
    assert math.isfinite(seconds) and seconds > 0  # how many depends on the machine: docs/benchmarks.md


def test_render_tables():
    row = Row("a: posted", 2.0, 1000.0, 900.0, 10.0, "fp32")
    result = {
        "model": "seed",
        "image_size": 150,
        "batch_size": 20,
        "epochs": 1,
        "machine": {},
        "rows": [row.__dict__],
        "ratios": {"b": {"speedup_vs_posted (a/b)": 2.5}},
    }
    text = render(result)
    assert "a: posted" in text and "2.50x" in text
    scale = [
        {
            "factor": f,
            "images": 100 * f,
            "wall_seconds": 5.0 * f,
            "seconds_per_epoch": 1.0 * f,
            "peak_rss_mb": 800 + 10 * f,
        }
        for f in (1, 4)
    ]
    assert "4.00" in render_scale(scale)


def test_ratios_compare_each_run_with_the_fastest_floor_of_its_precision():
    rows = [
        Row("a: posted loop", 24.0, 80.0, 1000.0, 80.0, "fp32"),
        Row("b: binclass train --precision fp32", 8.0, 250.0, 1300.0, 32.0, "fp32", train_seconds_per_epoch=6.8),
        Row("b: binclass train --precision auto", 6.0, 330.0, 1300.0, 24.0, "bf16"),
        Row("c: compute floor fp32 NCHW", 11.0, 180.0, 1500.0, 38.0, "training only"),
        Row("c: compute floor fp32 channels_last + compiled step", 6.4, 310.0, 1700.0, 26.0, "training only"),
        Row("c: compute floor bf16 channels_last", 5.0, 400.0, 1700.0, 20.0, "training only"),
        Row("c: compute floor bf16 channels_last + compiled model", 1.0, 2000.0, 1700.0, 60.0, "training only"),
    ]
    ratios = bench_ratios(rows)
    fp32, auto = ratios["b: binclass train --precision fp32"], ratios["b: binclass train --precision auto"]
    assert fp32["speedup_vs_posted (a/b)"] == 24.0 / 8.0 and fp32["vs_fp32_floor (b/c)"] == 8.0 / 6.4
    assert fp32["training pass / floor"] == 6.8 / 6.4
    assert abs(fp32["validation pass / floor"] - 1.2 / 6.4) < 1e-12
    assert fp32["whole-run speedup (a wall / b wall)"] == 80.0 / 32.0
    assert auto["vs_bf16_floor (b/c)"] == 6.0 / 5.0  # not the compiled model's floor: b does not run that
    assert "training pass / floor" not in auto  # no train_seconds: nothing made up


def test_bench_cuda_graphs_needs_a_gpu(tiny_data):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BinclassError, match="needs a CUDA device"):
        run_bench(tiny_data, device="cpu", cuda_graphs=True)
