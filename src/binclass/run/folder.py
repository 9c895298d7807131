"""Making a run folder, and the run metadata written into it besides the history and the weights."""

from __future__ import annotations

import csv
import platform
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data.scan import DataLayout
from ..errors import BinclassError
from ..models import normalization
from ..version import __version__
from .events import EVENTS_PREFIX
from .files import BEST_FILE, MODEL_FILE, RUN_FILES, RUN_MARKERS
from .lock import RunLock


def open_run_dir(out: Path, overwrite: bool, resume: bool, log: Callable[[str], None]) -> RunLock:
    """Create RUN_DIR (or open it, to resume) and lock it for this run. A folder that holds a run is
    refused unless --resume, or --overwrite, which removes only run files, and only once the lock is
    held: a live run's folder is never changed under it. The caller releases the lock."""
    if out.exists() and not out.is_dir():
        raise BinclassError(f"{out}: exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BinclassError(f"{out}: cannot create the run folder ({exc.strerror}); choose another --out") from None
    lock = RunLock(out).acquire(log)
    try:
        if not resume and any((out / name).exists() for name in RUN_MARKERS):
            if not overwrite:
                raise BinclassError(
                    f"{out}: already holds a run; choose another --out, --resume {out}, or pass --overwrite"
                )
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
            for events in out.glob(f"{EVENTS_PREFIX}*"):  # --tensorboard's, named by SummaryWriter
                events.unlink()
    except BaseException:
        lock.release()
        raise
    return lock


def environment(device: torch.device) -> dict:
    """Library versions, platform and device: the fields of config.Environment."""
    env = {
        "binclass": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


def model_meta(cfg: TrainConfig, layout: DataLayout) -> dict:
    """model.json's contents before the first checkpoint (which adds the epoch and the best epoch)."""
    mean, std = normalization(cfg.model)
    return {
        "format": "binclass-model/1",
        "architecture": cfg.model,
        "image_size": cfg.image_size,
        "width": cfg.width,
        "tta": bool(cfg.tta),
        "classes": layout.classes,
        "positive_class": layout.classes[1],
        "normalization": {"mean": list(mean), "std": list(std), "scale": "pixels / 255 first"},
        "input": "RGB, EXIF orientation applied, resized to image_size x image_size (bilinear)",
        "threshold": cfg.threshold,
        "eval_batch_size": cfg.eval_batch_size,
        "output": "one logit; probability of positive_class = sigmoid(logit); class 1 if probability >= threshold",
        # With --ema both weight files hold the weight average: the model that was scored.
        "weights": {
            MODEL_FILE: "last completed epoch",
            BEST_FILE: "epoch with the lowest validation loss",
            "averaged": bool(cfg.ema),
        },
        "binclass": __version__,
    }


def write_predictions(path: Path, layout: DataLayout, probs: np.ndarray, threshold: float) -> None:
    """val_predictions.csv: path, true_label, prob, pred_label for every validation image."""
    classes = layout.classes
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "true_label", "prob", "pred_label"])
        for p, y, prob in zip(layout.val.paths, layout.val.labels, probs.tolist()):
            writer.writerow([str(p), classes[y], repr(float(prob)), classes[int(prob >= threshold)]])
