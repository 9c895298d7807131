"""Flip a seeded random share of a data set's training labels, audit them, and train without the flagged
images: how many flips the audit finds, at what precision, and what excluding them buys.

    python scripts/label_noise.py DATA OUT [--rate 0.05] [--seed 0] [--train]

DATA: train/ + validation/ class folders (the shared set). Writes OUT/noisy.csv (every image with its
label, RATE of the training labels swapped; a label table binclass trains on), OUT/flipped.txt, and
runs `binclass check DATA --labels OUT/noisy.csv --labels-audit --json`. With --train, also trains the
default model on the noisy labels, and again with the flagged images excluded (OUT/flagged.txt), and
prints their validation accuracy beside each other."""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
from pathlib import Path


def binclass(*args: str) -> str:
    command = [sys.executable, "-m", "binclass", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def final_accuracy(run: Path) -> str:
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    last = rows[-1]
    return f"{float(last['val_acc']):.3f} [{float(last['val_acc_low']):.3f}, {float(last['val_acc_high']):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", action="store_true")
    a = parser.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    images = [
        (split, cls.name, f.resolve())
        for split in ("train", "validation")
        for cls in sorted(p for p in (a.data / split).iterdir() if p.is_dir())
        for f in sorted(cls.iterdir())
    ]
    classes = sorted({c for _, c, _ in images})
    train = [i for i, (split, _, _) in enumerate(images) if split == "train"]
    flipped = set(random.Random(a.seed).sample(train, round(a.rate * len(train))))
    table = a.out / "noisy.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "label", "split"])
        for i, (split, cls, path) in enumerate(images):
            label = classes[1 - classes.index(cls)] if i in flipped else cls
            writer.writerow([str(path), label, split])
    flips = {str(images[i][2]) for i in flipped}
    (a.out / "flipped.txt").write_text("".join(f"{p}\n" for p in sorted(flips)))

    audit = json.loads(
        binclass("check", str(a.data), "--labels", str(table), "--labels-audit", "--json", "--no-duplicates")
    )
    issues = audit["label_audit"]["issues"]
    flagged = [e["path"] for e in issues]
    found = sum(p in flips for p in flagged)
    top = sum(p in flips for p in flagged[:100])
    lowest = sorted(issues, key=lambda e: e["prob_given"])
    (a.out / "flagged.txt").write_text("".join(f"{p}\n" for p in flagged))
    print(f"rate {a.rate:.0%} (seed {a.seed}): {len(flips)} of {len(train)} training labels flipped")
    print("| flagged | flips among them | recall | precision | flips in the top 100 | estimated wrong |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| {len(flagged)} | {found} | {found / len(flips):.3f} | {found / max(1, len(flagged)):.3f} | {top} "
        f"| {audit['label_audit']['estimated_wrong']} |"
    )
    assert [e["path"] for e in lowest] == flagged, "ranked by self-confidence"
    if not a.train:
        return
    runs = {}
    for name, extra in (("noisy", []), ("flagged excluded", ["--exclude", str(a.out / "flagged.txt")])):
        run = a.out / name.replace(" ", "-")
        binclass("train", str(a.data), "--labels", str(table), "--out", str(run), "--overwrite", *extra)
        runs[name] = final_accuracy(run)
    print("| training labels | validation accuracy |")
    print("| --- | --- |")
    for name, accuracy in runs.items():
        print(f"| {name} | {accuracy} |")


if __name__ == "__main__":
    main()
