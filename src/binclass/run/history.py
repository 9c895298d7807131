"""The only writer and reader of a run's per-epoch (metrics.csv) and per-step (steps.csv) history.
Column names are an API: add columns, never rename them."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from .atomic import write_atomically
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
        os.fsync(f.fileno())  # on disk before the next checkpoint builds on it


def append_epochs(run_dir: Path, rows: list[dict]) -> None:
    _append(Path(run_dir) / METRICS_FILE, METRIC_COLUMNS, rows)


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


def truncate(run_dir: Path, last_epoch: int) -> list[int]:
    """Keep the rows of epochs up to last_epoch, and only whole rows (a crash can cut the last line
    short), rewriting each file atomically. Returns the epochs whose metrics rows were dropped."""
    dropped: list[int] = []
    for name, columns in ((METRICS_FILE, METRIC_COLUMNS), (STEPS_FILE, STEP_COLUMNS)):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None) or columns
            rows = [r for r in reader if r]
        kept = [r for r in rows if len(r) == len(header) and _epoch(r) is not None and _epoch(r) <= last_epoch]
        if name == METRICS_FILE:
            dropped = sorted({e for r in rows if (e := _epoch(r)) is not None and e > last_epoch})

        def write(tmp: Path, header: list[str] = header, kept: list[list[str]] = kept) -> None:
            with tmp.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(kept)

        write_atomically(path, write)
    return dropped


def _epoch(row: list[str]) -> int | None:
    try:
        return int(row[0])
    except ValueError:
        return None
