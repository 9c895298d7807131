"""Same images, same numbers: `binclass train DATA` on an empty cache, against two runs started at the same
moment on one empty cache, and against a run killed halfway through its backbone pass and run again on
what it left in its cache; each compared bit for bit with scripts/same_run.py (metrics.csv but the
timings, steps.csv, the weights, val_predictions.csv). A markdown table on stdout.

    python scripts/reproducibility.py DATA OUT [--busy] [--kill-at 0.5] [-- TRAIN OPTIONS]

--busy keeps both cores busy beside every run (a 2-thread PyTorch matrix-multiply loop), as a shared
machine would. --kill-at: the share of the training images whose features are cached when the run is
killed (SIGKILL, from outside, as an OOM killer would)."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from same_run import differences  # noqa: E402

BINCLASS = [sys.executable, "-m", "binclass"]
BUSY = "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True:\n    a = torch.tanh(a @ a)\n"


def train(data: Path, out: Path, cache: Path, extra: list[str]) -> subprocess.Popen:
    cmd = [*BINCLASS, "train", str(data), "--out", str(out), "--cache-dir", str(cache), "--overwrite", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(child: subprocess.Popen) -> None:
    _, err = child.communicate()
    if child.returncode != 0:
        sys.exit(f"a run failed ({child.returncode}): {err[-2000:]}")


def lines(run: Path) -> str:
    """The run's runtime and features lines, shortened."""
    log = (run / "train.log").read_text().splitlines()
    found = [line.split(" (")[0] for line in log if line.startswith(("backbone pass:", "features:"))]
    return "; ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--kill-at", type=float, default=0.5)
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if args.busy else None
    try:
        started = time.perf_counter()
        finish(train(args.data, out / "alone", out / "cache-alone", extra))
        alone_seconds = time.perf_counter() - started

        pair = [train(args.data, out / f"pair-{n}", out / "cache-pair", extra) for n in "ab"]
        for child in pair:
            finish(child)

        train_images = sum(1 for _ in (args.data / "train").rglob("*.*")) if (args.data / "train").is_dir() else 0
        wanted = max(1, int(args.kill_at * train_images)) if train_images else 1
        killed = train(args.data, out / "killed", out / "cache-kill", extra)
        while killed.poll() is None and len(list((out / "cache-kill" / "features").rglob("*.npy"))) < wanted:
            time.sleep(0.05)
        if killed.poll() is not None:
            sys.exit("the run ended before it could be killed halfway through its backbone pass")
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        cached = len(list((out / "cache-kill" / "features").rglob("*.npy")))
        finish(train(args.data, out / "killed", out / "cache-kill", extra))
    finally:
        if busy is not None:
            busy.kill()

    print(f"alone: {lines(out / 'alone')} ({alone_seconds:.0f} s{', both cores busy beside it' if busy else ''})\n")
    print("| run | its backbone pass and features | against the run alone |")
    print("| --- | --- | --- |")
    for name, note in (("pair-a", ""), ("pair-b", ""), ("killed", f" (killed with {cached} features cached)")):
        found = differences(out / "alone", out / name)
        print(f"| {name}{note} | {lines(out / name)} | {'identical' if not found else '; '.join(found)} |")


if __name__ == "__main__":
    main()
