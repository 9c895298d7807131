from binclass.bench import Row, _run, floor_epoch_seconds, render, render_scale


def test_child_peak_memory_is_measured_per_process():
    _, small, _ = _run(["json.tool", "--help"])
    _, big, out = _run(["binclass.bench", "--floor", "seed", "64", "100", "1", "50", "cpu", "fp32", "0", "0", "0"])
    assert float(out.strip()) > 0
    assert small < 100  # MB: a bare interpreter, not the parent's resident size carried over
    assert big - small > 150  # torch itself is several hundred MB resident


def test_floor_runs_and_reports_seconds():
    seconds = floor_epoch_seconds("seed", 32, 40, 1, 20, "cpu", "fp32", True)
    assert 0 < seconds < 30


def test_render_tables():
    row = Row("a: posted", 2.0, 1000.0, 900.0, 10.0, "fp32")
    result = {"model": "seed", "image_size": 150, "batch_size": 20, "epochs": 1, "machine": {},
              "rows": [row.__dict__], "ratios": {"b": {"speedup_vs_posted (a/b)": 2.5}}}  # fmt: skip
    text = render(result)
    assert "a: posted" in text and "2.50x" in text
    scale = [{"factor": f, "images": 100 * f, "wall_seconds": 5.0 * f, "seconds_per_epoch": 1.0 * f,
              "peak_rss_mb": 800 + 10 * f} for f in (1, 4)]  # fmt: skip
    assert "4.00" in render_scale(scale)
