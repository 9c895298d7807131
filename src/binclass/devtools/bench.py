"""binclass bench: on the same data, model, batch size and epochs, time (a) the posted loop,
(b) `binclass train`, (c) the compute floor (forward + backward + step on tensors already in
memory). Each runs in its own process, so each peak resident memory is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..allocator import keep_freed_memory
from ..data.scan import scan_dataset
from ..device import resolve_device
from ..engine.optim import step_function
from ..errors import BinclassError
from ..models import build_model
from ..run import history
from ..run.files import CONFIG_FILE
from ..synth import make_dataset


@dataclass
class Row:
    name: str
    seconds_per_epoch: float  # steady state: mean over epochs after the first (which pays one-off warm-up);
    # a and b include their validation pass, c is training only
    images_per_second: float  # training images per second of epoch time
    peak_rss_mb: float  # peak resident memory of the process
    wall_seconds: float  # whole process, start-up, decoding and compile included
    note: str = ""
    train_seconds_per_epoch: float | None = None  # b only: its training pass alone (metrics.csv train_seconds)


def steady(seconds: list[float]) -> float:
    """Mean seconds per epoch after the first: the first pays worker start-up and kernel selection."""
    tail = seconds[1:] or seconds
    return sum(tail) / len(tail)


def _run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, output) of `python -m MODULE ARGS` (cmd = [MODULE, *ARGS]) in a child
    process that records its own peak resident memory (see binclass.peak)."""
    with tempfile.NamedTemporaryFile(suffix=".peak") as peak_file:
        env = {**os.environ, "BINCLASS_PEAK_FILE": peak_file.name}
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "binclass.devtools.peak", *cmd], capture_output=True, text=True, env=env
        )
        wall = time.perf_counter() - start
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise BinclassError(f"benchmark step failed ({' '.join(cmd[:3])} ...): {out.strip().splitlines()[-1:]}")
        text = Path(peak_file.name).read_text().strip()
    return wall, float(text) if text else float("nan"), proc.stdout


def _posted(data_dir: Path, epochs: int, device: str, n_train: int, tmp: Path) -> Row:
    csv_path = tmp / "posted.csv"
    wall, rss, _ = _run(
        [
            "binclass.devtools.posted",
            str(data_dir),
            "--csv",
            str(csv_path),
            "--epochs",
            str(epochs),
            "--lr",
            "1e-4",
            "--device",
            device,
        ]
    )
    import csv

    spe = steady([float(r["seconds"]) for r in csv.DictReader(csv_path.open()) if r["seconds"]])
    return Row("a: posted loop (ImageFolder, DataLoader 2 workers)", spe, n_train / spe, rss, wall, "fp32")


def _binclass(
    data_dir: Path, model: str, epochs: int, batch: int, device: str, precision: str, tmp: Path, graphs: bool = False
) -> Row:
    out = tmp / f"run-{precision}{'-graphs' if graphs else ''}"
    wall, rss, log = _run(
        [
            "binclass.cli",
            "train",
            str(data_dir),
            "--out",
            str(out),
            "--model",
            model,
            "--epochs",
            str(epochs),
            "--batch-size",
            str(batch),
            "--optimizer",
            "rmsprop",
            "--lr",
            "1e-4",
            "--augment",
            "none",
            "--device",
            device,
            "--precision",
            precision,
            "--cuda-graphs",
            "on" if graphs else "off",
        ]
    )
    rows = history.read_epochs(out)
    spe = steady([r["seconds"] for r in rows])
    used = json.loads((out / CONFIG_FILE).read_text())["precision"]
    name = f"b: binclass train --precision {precision}" + (" --cuda-graphs on" if graphs else "")
    return Row(name, spe, rows[0]["train_n"] / spe, rss, wall, used, steady([r["train_seconds"] for r in rows]))


def _floor(
    model: str,
    size: int,
    n: int,
    epochs: int,
    batch: int,
    device: str,
    precision: str,
    channels_last: bool,
    compile: bool = False,
    compile_step: bool = False,
) -> Row:
    cmd = [
        "binclass.devtools.bench",
        "--floor",
        model,
        str(size),
        str(n),
        str(epochs),
        str(batch),
        device,
        precision,
        str(int(channels_last)),
        str(int(compile)),
        str(int(compile_step)),
    ]
    wall, rss, out = _run(cmd)
    spe = float(out.strip().splitlines()[-1])
    layout = (
        ("channels_last" if channels_last else "NCHW")
        + (" + compiled model" if compile else "")
        + (" + compiled step" if compile_step else "")
    )
    return Row(
        f"c: compute floor {precision} {layout}",
        spe,
        n / spe,
        rss,
        wall,
        "training only" + (" (wall includes compiling)" if compile else ""),
    )


def floor_epoch_seconds(
    model_name: str,
    size: int,
    n: int,
    epochs: int,
    batch: int,
    device: str,
    precision: str,
    channels_last: bool,
    compile: bool = False,
    compile_step: bool = False,
) -> float:
    """Mean seconds per epoch of forward + backward + RMSprop step over n in-memory images."""
    keep_freed_memory()  # as binclass train does
    dev = resolve_device(device)
    torch.manual_seed(0)
    model = build_model(model_name, size).to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if compile:
        model = torch.compile(model)
    x = torch.rand(n, 3, size, size, device=dev).contiguous(memory_format=fmt)
    y = (torch.rand(n, device=dev) < 0.5).float()
    opt = torch.optim.RMSprop(model.parameters(), lr=torch.tensor(1e-4) if compile_step else 1e-4)
    opt_step = step_function(opt, compile_step)
    use_bf16 = precision == "bf16"

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = model(x[i : i + batch]).reshape(-1)
        torch.nn.functional.binary_cross_entropy_with_logits(out.float(), y[i : i + batch]).backward()
        opt_step()

    for _ in range(5):  # warm-up: oneDNN primitive creation stays out of the timing
        step(0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, n, batch):
            step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / epochs


def run_bench(
    data_dir: Path,
    model: str = "seed",
    epochs: int = 2,
    batch_size: int = 20,
    device: str = "auto",
    image_size: int = 150,
    precisions: tuple[str, ...] = ("fp32", "auto"),
    compile: bool = False,
    cuda_graphs: bool = False,
) -> dict:
    """cuda_graphs: also time `binclass train --cuda-graphs on` at each precision (a GPU only)."""
    data_dir = Path(data_dir)
    if not (data_dir / "train").is_dir():
        raise BinclassError(f"{data_dir}: bench needs train/ and validation/ folders (as for the posted loop)")
    if cuda_graphs and not (device == "cuda" or (device == "auto" and torch.cuda.is_available())):
        raise BinclassError("bench --cuda-graphs needs a CUDA device (--device cuda); drop --cuda-graphs")
    n_train = len(scan_dataset(data_dir).train)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows = [_posted(data_dir, epochs, device, n_train, tmp)]
        rows += [_binclass(data_dir, model, epochs, batch_size, device, p, tmp) for p in precisions]
        if cuda_graphs:
            rows += [_binclass(data_dir, model, epochs, batch_size, device, p, tmp, graphs=True) for p in precisions]
        floors = [
            ("fp32", False, False, False),
            ("fp32", True, False, False),
            ("fp32", True, False, True),
            ("bf16", True, False, False),
            ("bf16", True, False, True),
        ]
        if compile:
            floors.append(("bf16", True, True, False))
        rows += [_floor(model, image_size, n_train, epochs, batch_size, device, *f) for f in floors]
    ratios = bench_ratios(rows)
    info = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    if torch.cuda.is_available() and device != "cpu":
        info["gpu"] = torch.cuda.get_device_name(0)
    return {
        "data_dir": str(data_dir),
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "image_size": image_size,
        "machine": info,
        "rows": [asdict(r) for r in rows],
        "ratios": ratios,
    }


def bench_ratios(rows: list[Row]) -> dict[str, dict[str, float]]:
    """For each b row: speed-up over the posted loop (rows[0]) and its ratio to the fastest floor of its
    precision (a compiled model is not what b runs), for the whole epoch (the target's measure: b's
    includes validation, the floor's does not) and, apart, for its training pass and validation pass."""
    posted = rows[0]
    floors = [r for r in rows if r.name.startswith("c:") and "compiled model" not in r.name]
    ratios = {}
    for r in rows:
        if not r.name.startswith("b:"):
            continue
        precision = "bf16" if r.note == "bf16" else "fp32"
        floor = min(f.seconds_per_epoch for f in floors if precision in f.name)
        ratios[r.name] = {
            "speedup_vs_posted (a/b)": posted.seconds_per_epoch / r.seconds_per_epoch,
            f"vs_{precision}_floor (b/c)": r.seconds_per_epoch / floor,
            "whole-run speedup (a wall / b wall)": posted.wall_seconds / r.wall_seconds,
        }
        if r.train_seconds_per_epoch is not None:
            ratios[r.name]["training pass / floor"] = r.train_seconds_per_epoch / floor
            ratios[r.name]["validation pass / floor"] = (r.seconds_per_epoch - r.train_seconds_per_epoch) / floor
    return ratios


def render(result: dict) -> str:
    lines = [
        f"binclass bench: model {result['model']}, {result['image_size']} px, batch {result['batch_size']}, "
        f"{result['epochs']} epochs, {result['machine']}",
        f"{'':52} {'s/epoch':>8} {'img/s':>7} {'peak MB':>8} {'wall s':>7}  note",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['name']:52} {r['seconds_per_epoch']:8.2f} {r['images_per_second']:7.0f} "
            f"{r['peak_rss_mb']:8.0f} {r['wall_seconds']:7.1f}  {r['note']}"
        )
    for name, ratio in result["ratios"].items():
        lines.append(f"{name}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))
    return "\n".join(lines)


if __name__ == "__main__":  # the floor's own process: python -m binclass.devtools.bench --floor ...
    if len(sys.argv) == 12 and sys.argv[1] == "--floor":
        _, _, m, s, n, e, b, d, p, cl, c, cs = sys.argv
        print(floor_epoch_seconds(m, int(s), int(n), int(e), int(b), d, p, bool(int(cl)), bool(int(c)), bool(int(cs))))
    else:
        sys.exit("internal entry point; use `binclass bench`")


def run_scale(
    base_per_class: int = 100, factors: tuple[int, ...] = (1, 4, 16), image_size: int = 150, epochs: int = 2
) -> list[dict]:
    """Train the seed network on generated sets of base x factor images per class (JPEG, 200 px):
    wall time, seconds per epoch and peak memory should grow linearly with the set."""
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for factor in factors:
            n = base_per_class * factor
            data = make_dataset(tmp / f"x{factor}", n_train=n, n_val=max(1, n // 4), size=200, seed=factor, fmt="jpg")
            out = tmp / f"run{factor}"
            wall, rss, _ = _run(
                [
                    "binclass.cli",
                    "train",
                    str(data),
                    "--out",
                    str(out),
                    "--model",
                    "seed",
                    "--epochs",
                    str(epochs),
                    "--batch-size",
                    "20",
                    "--image-size",
                    str(image_size),
                    "--optimizer",
                    "rmsprop",
                    "--augment",
                    "none",
                ]
            )
            rows = history.read_epochs(out)
            images = rows[0]["train_n"] + rows[0]["val_n"]
            results.append(
                {
                    "factor": factor,
                    "images": images,
                    "wall_seconds": wall,
                    "seconds_per_epoch": steady([r["seconds"] for r in rows]),
                    "peak_rss_mb": rss,
                }
            )
    return results


def render_scale(results: list[dict]) -> str:
    base = results[0]
    lines = [
        f"{'scale':>5} {'images':>7} {'s/epoch':>8} {'wall s':>7} {'peak MB':>8} {'MB over 1x':>10} {'s/epoch ratio':>13}"
    ]
    for r in results:
        lines.append(
            f"{r['factor']:>4}x {r['images']:>7} {r['seconds_per_epoch']:8.2f} {r['wall_seconds']:7.1f} "
            f"{r['peak_rss_mb']:8.0f} {r['peak_rss_mb'] - base['peak_rss_mb']:10.0f} "
            f"{r['seconds_per_epoch'] / base['seconds_per_epoch']:13.2f}"
        )
    return "\n".join(lines)
