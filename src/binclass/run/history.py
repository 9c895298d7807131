"""The only writer and reader of a run's per-epoch (metrics.csv) and per-step (steps.csv) history.
Column names are an API: add columns, never rename them."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from .files import METRICS_FILE, STEPS_FILE

METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_acc_low",
    "val_acc_high",
    "val_precision",
    "val_recall",
    "val_f1",
    "val_balanced_acc",
    "val_auc",
    "lr",
    "seconds",
    "train_n",
    "val_n",
    "val_tn",
    "val_fp",
    "val_fn",
    "val_tp",
    "train_seconds",  # the training pass alone; seconds - train_seconds is the validation pass
]
STEP_COLUMNS = ["epoch", "step", "loss", "batch_acc", "batch_size", "lr"]
INT_COLUMNS = {"epoch", "step", "batch_size", "train_n", "val_n", "val_tn", "val_fp", "val_fn", "val_tp"}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # repr round-trips exactly
    return str(value)


def _append(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Rows under the file's own header: a run written by an older binclass and resumed by this one
    keeps the columns it started with (a column added since is left out of its rows)."""
    header = None
    if path.exists():
        with path.open(newline="") as f:
            header = next(csv.reader(f), None)
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if header is None:
            writer.writerow(columns)
        else:
            columns = header
        for row in rows:
            writer.writerow([_fmt(row[c]) for c in columns])
        f.flush()


def append_epoch(run_dir: Path, row: dict) -> None:
    _append(Path(run_dir) / METRICS_FILE, METRIC_COLUMNS, [row])


def append_steps(run_dir: Path, rows: list[dict]) -> None:
    _append(Path(run_dir) / STEPS_FILE, STEP_COLUMNS, rows)


def _parse(row: dict) -> dict:
    return {k: (int(v) if k in INT_COLUMNS else float(v)) for k, v in row.items()}


def as_read(row: dict, columns: list[str]) -> dict:
    """A row as read_epochs/read_steps would return it after it was appended (repr round-trips floats)."""
    return _parse({c: _fmt(row[c]) for c in columns})


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [_parse(row) for row in csv.DictReader(f)]


def read_epochs(run_dir: Path) -> list[dict]:
    return _read(Path(run_dir) / METRICS_FILE)


def read_steps(run_dir: Path) -> list[dict]:
    return _read(Path(run_dir) / STEPS_FILE)


def truncate(run_dir: Path, last_epoch: int) -> None:
    """Drop rows after last_epoch (an epoch a crash interrupted), rewriting each file atomically."""
    for name, columns in ((METRICS_FILE, METRIC_COLUMNS), (STEPS_FILE, STEP_COLUMNS)):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, columns)
            rows = [r for r in reader if r and int(r[0]) <= last_epoch]
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
