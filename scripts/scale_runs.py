"""binclass train at several set sizes (scripts/make_scale.py's ROOT/nN folders), one process after
another: wall time, cost per image, images per second of each phase, peak memory, accuracy; a markdown
table on stdout.

    python scripts/scale_runs.py ROOT OUT [--sizes 10000,30000,100000] [--models default,small]
                                 [--small-epochs 2] [--second]

Each run gets an empty cache folder (OUT/cache-MODEL-N): the default computes every backbone feature.
--second runs the default again on the same cache (the second-run figures). --model small runs
--small-epochs epochs (its per-epoch cost is what scales; its 90-epoch default would take hours at
100,000 images on a CPU)."""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BINCLASS = [sys.executable, "-m", "binclass"]


def run(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak resident memory (GB) and exit status of a child process."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1e6, os.waitstatus_to_exitcode(status)


def seconds(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def row(model: str, n: int, out: Path, wall: float, peak: float, code: int, label: str) -> str:
    log = (out / "train.log").read_text() if (out / "train.log").exists() else ""
    if code != 0:
        return f"| {model} | {n} | {label} | failed ({code}) | | | | | | |"
    last = list(csv.DictReader((out / "metrics.csv").open()))[-1]
    train_n = int(last["train_n"])
    decode = seconds(r"\nimages: .* in ([\d.]+)s \(", log)
    phase_images = seconds(r"images ([\d.]+)s, ", log)
    features = seconds(r"\nfeatures: .* in ([\d.]+)s", log)
    passes = seconds(r"\nfeatures: (\d+) backbone passes", log)
    epochs = [float(x) for x in re.findall(r"\nepoch +\d+/\d+ .*\| ([\d.]+)s", log)]
    store = "file" if "go to a file" in log else "memory"
    if "left encoded" in log:
        store = "not decoded (features cached)"
    dup = phase_images - decode if phase_images is not None and decode is not None else None
    rate = lambda k, s: f"{k / s:.0f}" if s else "-"  # noqa: E731
    pass_rate = rate(passes, features) if features and passes else "-"
    epoch_rate = rate(train_n, min(epochs)) if epochs and model != "default" else "-"
    return (
        f"| {model} | {n} | {label} | {wall:.0f} | {wall / n * 1000:.1f} | {rate(n, decode)} ({store}) | "
        f"{rate(n, dup)} | {pass_rate if model == 'default' else epoch_rate} | {peak:.2f} | {float(last['val_acc']):.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--models", default="default,small")
    parser.add_argument("--small-epochs", type=int, default=2)
    parser.add_argument("--second", action="store_true")
    a = parser.parse_args()
    print("| model | images | run | wall s | s per 1000 images | decoding images/s (store) | duplicate search images/s "
          "| backbone passes/s (default), training images/s in an epoch (small) | peak GB | val acc |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model in a.models.split(","):
        for n in (int(s) for s in a.sizes.split(",")):
            cache = a.out / f"cache-{model}-{n}"
            shutil.rmtree(cache, ignore_errors=True)
            extra = [] if model == "default" else ["--model", model, "--epochs", str(a.small_epochs)]
            labels = ["first"] + (["second"] if a.second and model == "default" else [])
            for label in labels:
                out = a.out / f"{model}-{n}-{label}"
                cmd = [*BINCLASS, "train", str(a.root / f"n{n}"), "--out", str(out), "--overwrite",
                       "--cache-dir", str(cache), *extra]  # fmt: skip
                wall, peak, code = run(cmd)
                print(row(model, n, out, wall, peak, code, label), flush=True)
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
