"""How fast can this CPU train the from-scratch networks at all? A floor: the plainest PyTorch loop
(images already normalized in memory, no augmentation, no metrics, no checkpoints) in several variants
(threads, memory format, oneDNN, bf16, torch.compile), side by side with `binclass train`'s own epochs.

    python scripts/floor_small.py DATA [--model small] [--images 2000] [--repeats 3]

Prints training images per second, median (range) of --repeats epochs after a warm-up one, and each
variant against the floor's default (2 threads or all cores, channels_last, fp32, eager). The binclass
row trains DATA with `binclass train --model MODEL --epochs 1+repeats` (its recipe: augmentation, EMA,
metrics, checkpoints) and reads train_seconds of its epochs after the first."""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from binclass.allocator import keep_freed_memory
from binclass.device import bf16_supported
from binclass.models import build_model
from binclass.recipes.defaults import SMALL, SMALL_BY_DEVICE

SIZES = {"small": SMALL_BY_DEVICE["cpu"]["image_size"], "seed": 150}
BATCH = {"small": SMALL["batch_size"], "seed": 32}


def epoch_rates(model_name: str, n: int, repeats: int, threads: int, channels_last: bool, bf16: bool,
                compiled: bool, onednn: bool = True) -> list[float]:  # fmt: skip
    with torch.backends.mkldnn.flags(enabled=onednn):
        return _epoch_rates(model_name, n, repeats, threads, channels_last, bf16, compiled)


def _epoch_rates(model_name: str, n: int, repeats: int, threads: int, channels_last: bool, bf16: bool,
                 compiled: bool) -> list[float]:  # fmt: skip
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    size, batch = SIZES[model_name], BATCH[model_name]
    model = build_model(model_name, size).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(n, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (n,)).float()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb).reshape(-1)
        F.binary_cross_entropy_with_logits(logits.float(), yb).backward()
        optimizer.step()

    run = torch.compile(step) if compiled else step
    rates = []
    for epoch in range(repeats + 1):  # the first: warm-up (allocations, kernel choice, compilation)
        order = torch.randperm(n)
        start = time.perf_counter()
        for i in range(0, n - batch + 1, batch):
            idx = order[i : i + batch]
            run(x[idx], y[idx])
        if epoch:
            rates.append((n // batch) * batch / (time.perf_counter() - start))
    return rates


def binclass_rates(data: Path, model_name: str, repeats: int) -> list[float]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "binclass", "train", str(data), "--out", out, "--overwrite",
               "--model", model_name, "--epochs", str(repeats + 1)]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = list(csv.DictReader((Path(out) / "metrics.csv").open()))
    return [int(r["train_n"]) / float(r["train_seconds"]) for r in rows[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", default="small", choices=sorted(SIZES))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    keep_freed_memory()  # as binclass train runs
    cores = torch.get_num_threads()
    variants = [
        (f"floor: {cores} threads, channels_last, fp32, eager", dict(threads=cores, channels_last=True, bf16=False, compiled=False)),
        ("contiguous (NCHW) memory", dict(threads=cores, channels_last=False, bf16=False, compiled=False)),
        ("1 thread", dict(threads=1, channels_last=True, bf16=False, compiled=False)),
        ("torch.compile of the step", dict(threads=cores, channels_last=True, bf16=False, compiled=True)),
        ("oneDNN off (PyTorch's own convolutions)", dict(threads=cores, channels_last=True, bf16=False, compiled=False, onednn=False)),
    ]  # fmt: skip
    if bf16_supported(torch.device("cpu")):
        variants.append(("bf16 autocast", dict(threads=cores, channels_last=True, bf16=True, compiled=False)))
    rows = [(name, epoch_rates(a.model, a.images, a.repeats, **kw)) for name, kw in variants]
    torch.set_num_threads(cores)
    rows.append(
        (f"binclass train --model {a.model} (its recipe, {a.data.name})", binclass_rates(a.data, a.model, a.repeats))
    )
    base = statistics.median(rows[0][1])
    print(f"--model {a.model}: {SIZES[a.model]} px, batch {BATCH[a.model]}, {a.images} images per floor epoch")
    print("| loop | training images/s, median (range) | against the floor |")
    print("| --- | --- | --- |")
    for name, rates in rows:
        m = statistics.median(rates)
        print(f"| {name} | {m:.0f} ({min(rates):.0f}-{max(rates):.0f}) | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
