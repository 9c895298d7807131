"""Accuracy of the from-scratch recipes by training-set size: `binclass train SUB/nN --model M --seed S`
with nothing else set, for every size, model and seed, one after another, and a Markdown table of the
last epoch's validation accuracy, the whole process's wall time and the doctor's error findings: the
doctor of this checkout run over the history after every epoch, as `binclass train` runs it, plus those
train.log printed. SUB comes from scripts/subsets.py.

    python scripts/size_table.py SUB OUT [--sizes 250,500,1000,2000] [--models small,seed] [--seeds 0]

A run folder already in OUT with its report is read, not trained again: the table can be rebuilt, and an
interrupted sweep continued."""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from binclass.doctor.checks import diagnose
from binclass.doctor.diagnosis import doctor
from binclass.doctor.logs import History, fill_counts, from_run_folder

TIME_FILE = "wall_seconds.txt"


def replayed_errors(run_dir: Path) -> set[str]:
    """Error ids this checkout's doctor finds after any epoch of the run's history."""
    full = from_run_folder(run_dir)
    errors = set()
    for k in range(1, len(full.epochs) + 1):
        epoch = full.epochs[k - 1]["epoch"]
        h = History(
            epochs=full.epochs[:k],
            steps=[s for s in full.steps if s["epoch"] <= epoch],
            source=str(run_dir),
            batch_size=full.batch_size,
        )
        fill_counts(h)
        errors |= {f.id for f in diagnose(h) if f.severity == "error"}
    return errors


def run_once(data: Path, out: Path, model: str, seed: int) -> dict:
    if not (out / "report.html").exists() or not (out / TIME_FILE).exists():
        command = [sys.executable, "-m", "binclass", "train", str(data), "--model", model, "--seed", str(seed)]
        command += ["--out", str(out), "--overwrite"]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        (out / TIME_FILE).write_text(f"{time.perf_counter() - start:.1f}\n")
    with open(out / "metrics.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    log = (out / "train.log").read_text()
    printed = set(re.findall(r"doctor: error \[([a-z0-9-]+)\]", log))
    errors = replayed_errors(out)
    findings = [f.to_dict() for f in doctor(out)]
    config = json.loads((out / "config.json").read_text())
    return {
        "printed": sorted(printed),
        "acc": float(last["val_acc"]),
        "seconds": float((out / TIME_FILE).read_text()),
        "errors": sorted(errors),
        "warnings": sorted({f["id"] for f in findings if f["severity"] == "warning"}),
        "batch": config["batch_size"],
        "lr": config["lr"],
        "epochs": config["epochs"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subsets", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes", default="250,500,1000,2000")
    parser.add_argument("--models", default="small,seed")
    parser.add_argument("--seeds", default="0")
    a = parser.parse_args()
    print("| model | training images | batch, lr, epochs | seeds | validation accuracy (each) | mean | wall s (each) | doctor errors | warnings at the end | errors train.log printed |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model in a.models.split(","):
        for size in (int(s) for s in a.sizes.split(",")):
            seeds = [int(s) for s in a.seeds.split(",")]
            rows = [run_once(a.subsets / f"n{size}", a.out / f"{model}-n{size}-s{seed}", model, seed) for seed in seeds]
            accs = [r["acc"] for r in rows]
            errors = sorted({e for r in rows for e in r["errors"]}) or ["none"]
            warnings = sorted({w for r in rows for w in r["warnings"]}) or ["none"]
            printed = sorted({e for r in rows for e in r["printed"]}) or ["none"]
            first = rows[0]
            walls = ", ".join(f"{r['seconds']:.0f}" for r in rows)
            print(
                f"| {model} | {size} | {first['batch']}, {first['lr']:g}, {first['epochs']} | "
                f"{', '.join(map(str, seeds))} | {', '.join(f'{x:.3f}' for x in accs)} | "
                f"{statistics.mean(accs):.3f} | {walls} | "
                f"{', '.join(errors)} | {', '.join(warnings)} | {', '.join(printed)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
