"""The epoch driver every recipe uses: train, validate, record, track the best model, checkpoint when
due, stop early. What an epoch trains and how it validates are the recipe's (two callables); the rest is
the same for the from-scratch run, the pretrained head and its fine-tuning."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..allocator import release_free_memory
from ..doctor.diagnosis import EpochDoctor
from ..metrics import format_score
from ..run.checkpoints import Checkpoints
from ..run.events import EventLog
from ..run.hooks import Log
from ..run.state import StateSnapshot
from .loop import EpochStats, Evaluation
from .optim import Schedule


class BestModel:
    """The epoch with the lowest finite validation loss: its loss, its number, and a copy of its weights
    when they must wait for a later checkpoint (a checkpoint of the best epoch itself needs none: its
    model file is the best one)."""

    def __init__(self) -> None:
        self.loss = math.inf
        self.epoch: int | None = None
        self.pending: dict[str, torch.Tensor] | None = None  # weights not yet written to best.safetensors

    def improves(self, val_loss: float) -> bool:
        return math.isfinite(val_loss) and val_loss < self.loss

    def update(self, model: nn.Module, epoch: int, val_loss: float, keep_copy: bool) -> None:
        """This epoch is the new best (improves() said so). keep_copy: its weights must outlive the epoch,
        because no checkpoint is written at its end."""
        self.loss, self.epoch = val_loss, epoch
        self.pending = {k: v.detach().clone() for k, v in model.state_dict().items()} if keep_copy else None

    def take_pending(self) -> dict[str, torch.Tensor] | None:
        pending, self.pending = self.pending, None
        return pending

    def state_dict(self) -> dict:
        return {"best_loss": self.loss, "best_epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.loss, self.epoch = float(state["best_loss"]), state["best_epoch"]


class EarlyStop:
    """Stops after `patience` epochs in a row without a new best validation loss (None: never)."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.since_best = 0

    def update(self, improved: bool) -> None:
        self.since_best = 0 if improved else self.since_best + 1

    @property
    def triggered(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def state_dict(self) -> dict:
        return {"since_best": self.since_best}

    def load_state_dict(self, state: dict) -> None:
        self.since_best = int(state["since_best"])


def epoch_row(epoch: int, stats: EpochStats, m: dict, seconds: float) -> dict:
    """One metrics.csv row from the training pass and the validation metrics of an epoch."""
    (tn, fp), (fn, tp) = m["confusion"]
    return {
        "epoch": epoch,
        "train_loss": stats.loss,
        "train_acc": stats.accuracy,
        "val_loss": m["loss"],
        "val_acc": m["accuracy"],
        "val_acc_low": m["accuracy_low"],
        "val_acc_high": m["accuracy_high"],
        "val_precision": m["precision"],
        "val_recall": m["recall"],
        "val_f1": m["f1"],
        "val_balanced_acc": m["balanced_accuracy"],
        "val_auc": m["auc"],
        "lr": stats.steps[-1]["lr"],
        "seconds": seconds,
        "train_n": stats.n,
        "val_n": m["n"],
        "val_tn": tn,
        "val_fp": fp,
        "val_fn": fn,
        "val_tp": tp,
        "train_seconds": stats.seconds,
    }


class EpochRecorder:
    """The epoch's line and any new doctor finding, after every epoch of a run (the history files are
    written with the epoch's checkpoint). diagnose=False: a data-parallel rank other than 0, which
    neither prints nor reads the run folder."""

    def __init__(self, run_dir: Path, total: int, log: Log, diagnose: bool = True, events: bool = False) -> None:
        self.run_dir, self.total, self.log = Path(run_dir), total, log
        self.doctor = EpochDoctor(self.run_dir) if diagnose else None
        # --tensorboard: the same rows as event files; the doctor's history holds the steps kept so far
        self.events = EventLog(self.run_dir, len(self.doctor.history.steps)) if events and self.doctor else None

    def extend_to(self, total: int) -> None:
        """The run goes on to epoch `total` (fine-tuning after the head)."""
        self.total = total

    def record(self, row: dict, stats: EpochStats) -> None:
        self.log(
            f"epoch {row['epoch']:>3}/{self.total}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} [{row['val_acc_low']:.3f}, "
            f"{row['val_acc_high']:.3f}] auc {format_score(row['val_auc'])} | {row['seconds']:.1f}s"
        )
        if self.doctor is None:
            return
        if self.events is not None:
            self.events.add(row, stats.steps)
        for finding in self.doctor.after_epoch(row, stats.steps):
            self.log(f"doctor: {finding.severity} [{finding.id}] {finding.message}")


def run_epochs(
    epochs: range,
    *,
    train: Callable[[int], EpochStats],
    validate: Callable[[], Evaluation],
    scored: nn.Module,
    schedule: Schedule,
    recorder: EpochRecorder,
    best: BestModel,
    early_stop: EarlyStop,
    checkpoints: Checkpoints,
    state: Callable[[int], StateSnapshot] | None = None,
) -> Evaluation | None:
    """Run `epochs` (numbers of the run's epochs, in order) and return the last validation, or None when
    no epoch ran; every checkpoint is on disk when it returns. `scored` is the model that is validated,
    tracked and saved (a weight average, the whole network around a trained head). `state(epoch)`
    snapshots the training state for --resume after that epoch, to be written with its checkpoint."""
    ev = None
    last = epochs[-1] if len(epochs) else None
    try:
        for epoch in epochs:
            if early_stop.triggered:
                break  # a resumed run that had already stopped early
            checkpoints.raise_if_failed()  # a full disk stops the run at the next epoch, not at its end
            release_free_memory()  # what the last epoch freed (steps, validation, checkpoint): kept, it adds up
            started = time.perf_counter()
            stats = train(epoch)
            ev = validate()
            schedule.after_epoch()
            row = epoch_row(epoch, stats, ev.metrics, time.perf_counter() - started)
            checkpoints.add_rows(row, stats.steps)
            recorder.record(row, stats)
            improved = best.improves(row["val_loss"])
            early_stop.update(improved)
            due = checkpoints.due(force=early_stop.triggered or epoch == last)
            if improved:
                best.update(scored, epoch, row["val_loss"], keep_copy=not due and checkpoints.enabled)
            if due:
                release_free_memory()  # the epoch's kept activations, before the snapshot's copies stack on top
                snapshot = state(epoch) if state is not None else None
                checkpoints.write(scored, epoch, best.take_pending(), best.epoch, best.loss, snapshot)
            if early_stop.triggered:
                recorder.log(
                    f"early stop: validation loss has not improved for {early_stop.patience} epochs "
                    f"(best: epoch {best.epoch})"
                )
                break
    except BaseException:
        # The checkpoint in flight still lands: it is the one to resume from. Its own error, if any, is
        # dropped: the error that stopped the run is the one to report.
        with contextlib.suppress(Exception):
            checkpoints.wait()
        raise
    checkpoints.wait()
    return ev
