"""Progress lines of long phases: the rate and the time left, in place on a terminal, plain lines in
train.log and wherever nothing is redrawn."""

from __future__ import annotations

import io

from helpers import train_cli

from binclass import progressbar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fake_clock(times: list[float]):
    it = iter(times)
    return lambda: next(it)


def test_progress_text_gives_the_rate_and_the_time_left():
    assert progressbar.progress_text("decoding", "images", 0, 3000, 0.0) == "decoding: 0/3000 images"
    text = progressbar.progress_text("decoding", "images", 1000, 3000, 4.0)
    assert text == "decoding: 1000/3000 images, 250 images/s, 0:08 left"
    assert progressbar.clock_text(3725) == "1:02:05" and progressbar.clock_text(59.6) == "1:00"


def test_plain_lines_without_a_terminal_and_in_place_on_one(monkeypatch):
    logged, kept = [], []
    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    show = progressbar.progress(
        "pass", "images", logged.append, kept.append, every=10, clock=_fake_clock([0, 5, 12, 15, 30])
    )
    for done in (100, 240, 300, 400):
        show(done, 400)
    assert logged == ["pass: 240/400 images, 20 images/s, 0:08 left"] and kept == [] and piped.getvalue() == ""
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    logged.clear()
    show = progressbar.progress(
        "pass", "images", logged.append, kept.append, every=10, clock=_fake_clock([0, 5, 12, 15])
    )
    for done in (100, 240, 400):
        show(done, 400)
    assert logged == [] and kept == ["pass: 240/400 images, 20 images/s, 0:08 left"]
    drawn = terminal.getvalue()
    assert drawn.startswith("\rpass: 100/400 images, 20 images/s, 0:15 left") and drawn.endswith("\r")
    assert "\n" not in drawn


def test_a_run_writes_its_progress_lines_to_train_log(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(progressbar, "PLAIN_EVERY", 0.0)  # every call: the phases of a tiny set take milliseconds
    result = train_cli(tiny_data, tmp_path / "r", image_size=64, epochs=1, cache_dir=tmp_path / "cache")  # all decoded
    assert result.exit_code == 0, result.output
    log = (tmp_path / "r" / "train.log").read_text()
    for phase in ("decoding training images", "duplicate search", "backbone pass, training images", "head epoch 1/1"):
        lines = [line for line in log.splitlines() if line.startswith(f"{phase}: ")]
        assert lines and all(" left" in line and "/s, " in line for line in lines), phase
        assert lines[0] in result.output  # not on a terminal: the same lines on the run's output


def test_a_from_scratch_run_says_its_expected_time_and_suggests_a_budget_when_long(tiny_data, tmp_path, monkeypatch):
    import re

    result = train_cli(tiny_data, tmp_path / "a", model="seed", image_size=32, epochs=2)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("expected: about ")]
    assert len(lines) == 1 and re.search(r"\d+:\d\d in all \([\d.]+ s per step of \d+ per epoch, 2 epochs", lines[0])
    assert "--time-budget" not in lines[0]
    monkeypatch.setattr("binclass.recipes.scratch.LONG_RUN_MINUTES", 1e-6)
    long = train_cli(tiny_data, tmp_path / "b", model="seed", image_size=32, epochs=2)
    assert "would fit the whole schedule into 1e-06 minutes" in long.output and "--time-budget 1e-06m" in long.output
