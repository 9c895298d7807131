"""Read a training history into one shape: a binclass run folder, or another tool's log: CSV or JSON
lines (Keras's and Lightning's CSVLogger, Ultralytics' results.csv, timm's summary.csv), Hugging Face's
trainer_state.json, a Keras history dict, TensorBoard event files (formats). Missing columns leave
gaps, never errors."""

from __future__ import annotations

import contextlib
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BinclassError
from ..run import history as run_history
from ..run.files import CONFIG_FILE
from . import formats

# Canonical name -> names other tools write (compared lowercased, with "/" and "-" read as "_").
EPOCH_ALIASES = {
    "train_loss": (
        "loss",
        "train_loss",
        "training_loss",
        "train_loss_epoch",
        "loss_epoch",
        "trn_loss",
        "loss_train",  # SummaryWriter tags such as "Loss/train"
    ),
    "train_acc": (
        "acc",
        "accuracy",
        "train_acc",
        "train_accuracy",
        "binary_accuracy",
        "train_binary_accuracy",
        "train_acc_epoch",
        "acc_epoch",
        "training_accuracy",
        "training_acc",
        "accuracy_train",
        "acc_train",
    ),
    "val_loss": (
        "val_loss",  # also Ultralytics' val/loss
        "valid_loss",
        "validation_loss",
        "val_loss_epoch",
        "eval_loss",  # Hugging Face, timm
        "loss_val",
        "loss_valid",
        "loss_validation",
    ),
    "val_acc": (
        "val_acc",
        "val_accuracy",
        "val_binary_accuracy",
        "valid_acc",
        "valid_accuracy",
        "validation_accuracy",
        "validation_acc",
        "val_acc_epoch",
        "eval_accuracy",  # Hugging Face, with compute_metrics returning "accuracy"
        "eval_acc",
        "metrics_accuracy_top1",  # Ultralytics classify
        "eval_top1",  # timm, in percent (PERCENT)
        "accuracy_val",
        "acc_val",
        "accuracy_validation",
    ),
    "lr": ("lr", "learning_rate"),  # and lr_<anything>: Lightning's LearningRateMonitor, Ultralytics' lr/pg0
}
PERCENT = frozenset({"eval_top1"})  # accuracies these tools write in percent
VALIDATION_NAMES = frozenset(EPOCH_ALIASES["val_loss"] + EPOCH_ALIASES["val_acc"])
STEP_ALIASES = {
    "loss": ("train_loss_step", "loss_step"),
    "batch_acc": ("train_acc_step", "acc_step", "accuracy_step", "batch_acc"),
}
EPOCH_KEYS = ("epoch", "epochs")
STEP_KEYS = ("step", "iteration", "iter", "itr", "it", "global_step", "batch", "steps")


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)  # epoch, train_loss, train_acc, val_loss, val_acc, lr, val_n, ...
    steps: list[dict] = field(default_factory=list)  # step, loss, batch_acc, batch_size, lr (+ epoch when known)
    source: str = ""
    batch_size: int | None = None
    val_n: int | None = None
    val_positive_rate: float | None = None  # share of the positive class in validation, when known
    counts: bool = False  # epochs carry val_tn/fp/fn/tp (exact prediction counts)


def _norm(key: str) -> str:
    return key.strip().lower().replace("/", "_").replace("-", "_").replace(" ", "_")


def is_validation_key(key: str) -> bool:
    return _norm(key) in VALIDATION_NAMES


def _num(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)  # "nan" and "inf" parse, and must: they are evidence
    except (TypeError, ValueError):
        return None


def _canonical(row: dict) -> tuple[dict, dict, float | None, float | None, bool]:
    """(epoch-level values, step-level values, epoch, step, explicitly per-epoch) of one raw row."""
    norm = {_norm(k): v for k, v in row.items() if k is not None}
    if "valid_loss" in norm and "accuracy" in norm and not any(k in norm for k in EPOCH_ALIASES["val_acc"]):
        norm["val_acc"] = norm.pop("accuracy")  # fastai's recorder: its metrics are computed on validation
    epoch_vals, step_vals = {}, {}
    explicit_epoch = False  # Lightning's *_epoch columns: aggregated over the epoch, even beside a step column
    for canon, names in EPOCH_ALIASES.items():
        for name in names:
            if _num(norm.get(name)) is not None:
                epoch_vals[canon] = _num(norm[name]) / (100 if name in PERCENT else 1)
                explicit_epoch |= name.endswith("_epoch")
                break
    if "lr" not in epoch_vals:  # Lightning's LearningRateMonitor writes lr_<optimizer>
        for k, v in norm.items():
            if k.startswith("lr_") and _num(v) is not None:
                epoch_vals["lr"] = _num(v)
                break
    for canon, names in STEP_ALIASES.items():
        for name in names:
            if _num(norm.get(name)) is not None:
                step_vals[canon] = _num(norm[name])
                break
    if _num(norm.get("batch_size")) is not None:
        step_vals["batch_size"] = _num(norm["batch_size"])
    epoch = next((_num(norm[k]) for k in EPOCH_KEYS if _num(norm.get(k)) is not None), None)
    step = next((_num(norm[k]) for k in STEP_KEYS if _num(norm.get(k)) is not None), None)
    epoch = int(epoch) if epoch is not None and epoch.is_integer() else epoch  # "8", not "8.0", in messages
    step = int(step) if step is not None and step.is_integer() else step
    return epoch_vals, step_vals, epoch, step, explicit_epoch


def from_rows(rows: list[dict], source: str) -> History:
    """Rows of any logger. With a step/iteration column, a row of training values alone is one step's
    observation (a printed batch accuracy is one batch's); validation values always describe an epoch."""
    parsed = [_canonical(r) for r in rows]
    has_step = any(step is not None for _, _, _, step, _ in parsed)
    epochs: dict[float, dict] = {}
    steps: list[dict] = []
    for index, (ev, sv, epoch, step, explicit_epoch) in enumerate(parsed):
        is_val = "val_loss" in ev or "val_acc" in ev
        if has_step and not is_val and not explicit_epoch and ("train_loss" in ev or "train_acc" in ev):
            sv = {"loss": ev.pop("train_loss", None), "batch_acc": ev.pop("train_acc", None), **sv}
        if sv:
            record = {
                "step": step if step is not None else len(steps) + 1,
                "epoch": epoch,
                "lr": ev.pop("lr", None),
                **sv,
            }
            steps.append({k: v for k, v in record.items() if v is not None})
        if ev:
            key = epoch if epoch is not None else float(index)
            epochs.setdefault(key, {"epoch": epoch if epoch is not None else index + 1}).update(ev)
    hist = History(epochs=[epochs[k] for k in sorted(epochs)], steps=steps, source=source)
    sizes = {int(s["batch_size"]) for s in steps if "batch_size" in s}
    hist.batch_size = max(sizes) if sizes else None
    return hist


def from_run_folder(run_dir: Path) -> History:
    epochs = run_history.read_epochs(run_dir)
    steps = run_history.read_steps(run_dir)
    hist = History(epochs=epochs, steps=steps, source=str(run_dir))
    with contextlib.suppress(OSError, KeyError, ValueError):  # else fill_counts takes steps.csv's largest batch
        hist.batch_size = int(json.loads((run_dir / CONFIG_FILE).read_text())["batch_size"])
    fill_counts(hist)
    return hist


def fill_counts(hist: History) -> None:
    """val_n and the positive share from the last epoch of a binclass history; the batch size from
    its steps when config.json did not give it."""
    if hist.batch_size is None:
        hist.batch_size = max((s["batch_size"] for s in hist.steps), default=None)
    hist.counts = bool(hist.epochs)
    if hist.epochs and hist.epochs[-1].get(
        "val_n"
    ):  # absent in a hand-made or foreign metrics.csv: no counts, no crash
        last = hist.epochs[-1]
        hist.val_n = int(last["val_n"])
        if last.get("val_tp") is not None and last.get("val_fn") is not None:
            hist.val_positive_rate = (last["val_tp"] + last["val_fn"]) / last["val_n"]


def load_histories(target: Path) -> list[History]:
    """One history per run: a file, a run folder, or a folder of runs (lightning_logs/, runs/, a Hugging
    Face output folder), searched formats.SEARCH_DEPTH levels deep."""
    target = Path(target)
    if target.is_dir():
        runs = formats.find_runs(target)
        if not runs:
            raise BinclassError(
                f"{target}: no history in it or {formats.SEARCH_DEPTH} levels below (looked for "
                f"{', '.join((*formats.CSV_LOGS, formats.HF_STATE, *formats.HISTORY_JSON))} and TensorBoard event files)"
            )
        return [load_run(run) for run in runs]
    return [load_history(target)]


def load_run(folder: Path) -> History:
    """One run's folder: binclass's own, or one formats.is_run recognizes."""
    if (folder / run_history.METRICS_FILE).is_file() and (folder / CONFIG_FILE).is_file():
        return from_run_folder(folder)
    file = formats.history_file(folder)
    if file is not None:
        return load_history(file)
    return _checked(from_rows(formats.tensorboard_rows(folder, is_validation_key), str(folder)), folder, [])


def load_history(target: Path) -> History:
    """A run folder, or one file of any format logs reads."""
    target = Path(target)
    if target.is_dir():
        histories = load_histories(target)
        if len(histories) > 1:
            raise BinclassError(f"{target}: holds {len(histories)} runs; give one of them")
        return histories[0]
    if not target.is_file():
        raise BinclassError(f"{target}: no such file or folder")
    if target.name.startswith(formats.EVENTS):
        return _checked(from_rows(formats.tensorboard_rows(target, is_validation_key), str(target)), target, [])
    text = target.read_text(errors="replace")
    batch_size = None
    try:
        document = json.loads(text) if text.lstrip().startswith("{") else None
    except json.JSONDecodeError:
        document = None  # JSON lines: one object per line
    try:
        parsed = formats.json_rows(target, document) if document is not None else None
        if parsed is not None:
            rows, batch_size = parsed
        elif target.suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{"):
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = list(csv.DictReader(text.splitlines()))
    except (json.JSONDecodeError, csv.Error) as exc:
        raise BinclassError(f"{target}: cannot parse as CSV or JSON lines ({exc})") from None
    if not rows or not isinstance(rows[0], dict):
        raise BinclassError(f"{target}: no rows found; expected a header line and one row per epoch or step")
    hist = from_rows(rows, str(target))
    hist.batch_size = hist.batch_size or batch_size
    return _checked(hist, target, rows)


def _checked(hist: History, source: Path, rows: list[dict]) -> History:
    if hist.epochs or hist.steps:
        return hist
    seen = sorted({str(k) for row in rows for k in row}) or ["none"]
    known = "; ".join(f"{canon}: {', '.join(names)}" for canon, names in EPOCH_ALIASES.items())
    raise BinclassError(
        f"{source}: no known columns (saw: {', '.join(seen[:30])}); it reads, compared lowercased "
        f"with / and - as _, {known}; epoch: {', '.join(EPOCH_KEYS)}; step: {', '.join(STEP_KEYS)}"
    )


def finite(values: list) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)
