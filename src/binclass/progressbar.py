"""Progress of a long phase (decoding, backbone passes, the duplicate search, an epoch) with its rate and
the time left: a line updated in place on a terminal, and plain lines every PLAIN_EVERY seconds where
nothing is updated in place (train.log, output piped to a file or another program)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

Progress = Callable[[int, int], None]  # (done, total)
# A plain line every 20 s: a 100,000-image phase says where it is a few times a minute, and a phase of
# seconds (the shared set's decoding, a head epoch) adds no line at all.
PLAIN_EVERY = 20.0
REDRAW_EVERY = 0.1  # seconds between in-place redraws: a step of milliseconds must not wait on the terminal


def clock_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def progress_text(label: str, unit: str, done: int, total: int, elapsed: float) -> str:
    """'decoding: 1200/3000 images, 310 images/s, 0:06 left' (the rate once something is done)."""
    text = f"{label}: {done}/{total} {unit}"
    if done > 0 and elapsed > 0:
        rate = done / elapsed
        shown = f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"
        text += f", {shown} {unit}/s, {clock_text((total - done) / rate)} left"
    return text


def progress(
    label: str,
    unit: str = "images",
    log: Callable[[str], None] | None = None,
    keep: Callable[[str], None] | None = None,
    every: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Progress:
    """A progress callback for one phase. On a terminal (stderr, or the one a run's captured stderr keeps):
    the line redrawn in place, and plain lines through keep (train.log alone). Elsewhere: plain lines
    through log (the run's output and train.log). Safe to call from several threads."""
    stream = getattr(sys.stderr, "terminal", sys.stderr)
    tty = stream.isatty()
    plain = keep if tty else log
    every = PLAIN_EVERY if every is None else every
    start = clock()
    state = {"drawn": -1.0, "written": start, "width": 0}
    lock = threading.Lock()

    def show(done: int, total: int) -> None:
        now = clock()
        with lock:
            text = progress_text(label, unit, done, total, now - start)
            if tty and (done >= total or now - state["drawn"] >= REDRAW_EVERY):
                state["drawn"] = now
                pad = " " * max(0, state["width"] - len(text))
                stream.write(f"\r{text}{pad}" if done < total else "\r" + " " * max(state["width"], len(text)) + "\r")
                state["width"] = len(text)
                stream.flush()
            if plain is not None and done < total and now - state["written"] >= every:
                state["written"] = now
                plain(text)

    return show


def terminal_progress(prefix: str) -> Progress | None:
    """An in-place line when stderr is a terminal; None (silent) otherwise: for commands without a log."""
    stream = getattr(sys.stderr, "terminal", sys.stderr)
    return progress(prefix, "images") if stream.isatty() else None


def counted(total: int, report: Progress | None) -> Callable[[], None]:
    """A one-more-done callback for work done one item at a time in several threads."""
    done = [0]
    lock = threading.Lock()

    def tick() -> None:
        with lock:
            done[0] += 1
            n = done[0]
        if report is not None:
            report(n, total)

    return tick
