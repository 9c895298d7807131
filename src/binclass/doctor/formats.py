"""Other tools' histories as rows for logs.from_rows: TensorBoard event files (read with tensorboard's
own EventAccumulator), Hugging Face's trainer_state.json, a Keras `history.history` dump, and the CSV
files of Ultralytics, timm and Lightning (through logs' column aliases). Which files make a run, and
how a folder of several runs is split into them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..errors import BinclassError

EVENTS = "events.out.tfevents."
KERAS_SPLITS = {"train": "", "validation": "val_"}  # Keras's TensorBoard callback: one folder per split
HF_STATE = "trainer_state.json"
CSV_LOGS = ("metrics.csv", "results.csv", "summary.csv")  # Lightning/binclass, Ultralytics, timm
HISTORY_JSON = ("history.json",)
SEARCH_DEPTH = 4  # levels below the folder given that are searched for runs (lightning_logs/version_N/...)


def event_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith(EVENTS))


def _keras_layout(folder: Path) -> bool:
    return all((folder / s).is_dir() and event_files(folder / s) for s in KERAS_SPLITS)


def is_run(folder: Path) -> bool:
    """A folder that holds one run's history in a format the doctor reads."""
    return (
        any((folder / name).is_file() for name in (*CSV_LOGS, HF_STATE, *HISTORY_JSON))
        or bool(event_files(folder))
        or _keras_layout(folder)
    )


def find_runs(folder: Path) -> list[Path]:
    """Every run under folder (folder itself when it is one), in name order. Of a Hugging Face output
    folder's checkpoint-N/ copies of one trainer_state.json, the last one stands for the run."""
    if is_run(folder):
        return [folder]
    found: list[Path] = []

    def walk(here: Path, depth: int) -> None:
        if depth > SEARCH_DEPTH:
            return
        children = sorted((p for p in here.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural)
        checkpoints = [c for c in children if re.fullmatch(r"checkpoint-\d+", c.name) and (c / HF_STATE).is_file()]
        for child in children:
            if child in checkpoints and child != checkpoints[-1]:
                continue
            if is_run(child):
                found.append(child)
            else:
                walk(child, depth + 1)

    walk(folder, 1)
    return found


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def history_file(folder: Path) -> Path | None:
    """The one file of a run folder that holds its history (None: event files)."""
    for name in (HF_STATE, *CSV_LOGS, *HISTORY_JSON):
        if (folder / name).is_file():
            return folder / name
    return None


# --- TensorBoard ----------------------------------------------------------------------------------
def _accumulator(path: Path):
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        raise BinclassError(
            f"{path}: reading TensorBoard event files needs the tensorboard package: pip install 'binclass[tensorboard]'"
        ) from None
    # 0: keep every value (the default keeps a sample of 10,000 scalars per tag)
    acc = event_accumulator.EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of every file in path (a file, or a folder's event files). torch's and
    tensorboardX's SummaryWriter write scalars; TensorFlow 2 (Keras) writes them as 0-d tensors."""
    acc = _accumulator(path)
    tags = acc.Tags()
    out: dict[str, list[tuple[int, float]]] = {}
    for tag in tags.get("scalars", []):
        out[tag] = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
    if tags.get("tensors"):
        from tensorboard.util import tensor_util

        for tag in tags["tensors"]:
            values = []
            for e in acc.Tensors(tag):
                array = tensor_util.make_ndarray(e.tensor_proto)
                if array.size == 1 and array.dtype.kind in "fiu":
                    values.append((e.step, float(array.reshape(()))))
            if values:
                out[tag] = values
    return out


def tensorboard_rows(path: Path, is_validation: Callable[[str], bool]) -> list[dict]:
    """Rows for from_rows from an event file or a run folder of them (Keras's train/ + validation/
    layout included). Training and validation values of one step are two rows, as a CSV logger writes
    them. Without an `epoch` tag (Lightning writes one), a step at which validation was logged is taken
    as an epoch's end, numbered in order; when every value was logged at those steps, they are epochs."""
    if path.is_dir() and _keras_layout(path):
        rows: dict[int, dict] = {}
        for split, prefix in KERAS_SPLITS.items():
            for tag, values in _scalars(path / split).items():
                if not tag.startswith("epoch_"):
                    continue  # batch_* and evaluation_*_vs_iterations: per-step views of the same run
                for step, value in values:
                    rows.setdefault(step, {"epoch": step + 1})[prefix + tag.removeprefix("epoch_")] = value
        return [rows[s] for s in sorted(rows)]
    scalars = _scalars(path)
    by_step: dict[int, dict] = {}
    for tag, values in scalars.items():
        for step, value in values:
            by_step.setdefault(step, {})[tag] = value
    val_steps = sorted(s for s, row in by_step.items() if any(is_validation(k) for k in row))
    if "epoch" not in scalars and all(s in val_steps for s in by_step):  # every value at the epochs' ends
        return [{"epoch": i + 1, **by_step[s]} for i, s in enumerate(val_steps)]
    rows = []
    for s in sorted(by_step):  # training and validation values of one step: two observations, as in the CSV
        row = by_step[s]
        epoch = {"epoch": row["epoch"]} if "epoch" in row else {}
        if not epoch and s in val_steps:
            epoch = {"epoch": val_steps.index(s) + 1}
        train = {k: v for k, v in row.items() if not is_validation(k) and k != "epoch"}
        val = {k: v for k, v in row.items() if is_validation(k)}
        rows += [{"step": s, **part, **epoch} for part in (train, val) if part]
    return rows


# --- JSON histories -------------------------------------------------------------------------------
# Hugging Face's final log entry averages the whole run (train_loss over every step): not a step's value.
HF_SUMMARY_KEYS = ("train_runtime", "total_flos")


def json_rows(path: Path, data: object) -> tuple[list[dict], int | None] | None:
    """(rows, batch size) of a JSON history, or None when data is not one: Hugging Face's
    trainer_state.json ({"log_history": [...]}) or a Keras history dict of lists."""
    if isinstance(data, dict) and isinstance(data.get("log_history"), list):
        rows = [e for e in data["log_history"] if isinstance(e, dict) and not any(k in e for k in HF_SUMMARY_KEYS)]
        batch = data.get("train_batch_size")
        return rows, int(batch) if isinstance(batch, int) else None
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise BinclassError(
                f"{path}: a history of lists of different lengths ({sorted(lengths)}); expected one per epoch"
            )
        n = lengths.pop()
        return [{"epoch": i + 1, **{k: v[i] for k, v in data.items()}} for i in range(n)], None
    return None
