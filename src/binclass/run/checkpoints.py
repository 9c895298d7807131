"""Checkpoints: the weights, model.json, the training state and the history rows, written in the
background and in order, so that every epoch with a row in metrics.csv is a point to resume from."""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import BinclassError
from . import history
from .atomic import link_atomically
from .files import BEST_FILE, META_FILE, MODEL_FILE, STATE_FILE, STATE_WEIGHTS
from .hooks import EventHook
from .state import StateSnapshot, write_state
from .weights import cpu_copy, save_meta, save_weights


class Checkpoints:
    """Checkpoints of one run folder, each taken at the end of an epoch: at most every `every` seconds
    (0: every epoch) and whenever forced (the last epoch, an early stop).

    A checkpoint is copied on the training thread (a snapshot) and written by one background thread,
    in this order: model.safetensors, best.safetensors, model.json, state.safetensors, then the
    history rows of the epochs it completes (steps.csv, then metrics.csv). Each file is written
    atomically, and the state also holds those rows. The state's copy of the weights is not written
    again: it is a second name of model.safetensors (run.files.STATE_WEIGHTS, the one that the state
    on disk does not name), made just before the state. So a row appears in metrics.csv only once its
    epoch's checkpoint is on disk, and a resume restores the rows whatever became of the history files.
    Training waits for a write only when the next checkpoint is due before the last one is written.
    enabled=False: a data-parallel rank other than 0, which trains the same model and writes nothing."""

    def __init__(
        self, run_dir: Path, meta: dict, every: float = 0.0, on_event: EventHook | None = None, enabled: bool = True
    ) -> None:
        self.run_dir, self.meta, self.every, self.on_event = Path(run_dir), meta, every, on_event
        self.enabled = enabled
        self.last_write = time.perf_counter()
        self.saved_epoch: int | None = None  # the last checkpoint on disk with its training state
        self.state_weights: str | None = None  # the weights file that state names
        self._metrics: list[dict] = []  # rows of the epochs since the last checkpoint
        self._steps: list[dict] = []
        self._pending: _Write | None = None

    @property
    def epoch(self) -> int:
        """The epoch of the last checkpoint taken (0: none yet)."""
        return int(self.meta.get("epoch", 0))

    def resumed(self, epoch: int, best_epoch: int | None, best_loss: float, state_weights: str) -> None:
        """The run continues after the checkpoint of `epoch` found on disk, whose state names
        state_weights (the next state goes to the other slot)."""
        self.meta.update(epoch=epoch, best_epoch=best_epoch, best_val_loss=best_loss)
        self.saved_epoch, self.state_weights = epoch, state_weights

    def choose_default(self, checkpoint: str, kept: str) -> None:
        """model.json names the checkpoint predict loads (`kept` says why) and is written again."""
        self.meta.update(default_checkpoint=checkpoint, kept=kept)
        self.save_meta()

    def add_rows(self, row: dict, steps: list[dict]) -> None:
        """An epoch's metrics row and step rows, written with the next checkpoint."""
        if not self.enabled:
            return
        self._metrics.append(row)
        self._steps += steps

    def due(self, force: bool = False) -> bool:
        if not self.enabled:
            return False
        return force or self.every <= 0 or time.perf_counter() - self.last_write >= self.every

    def write(
        self,
        model: nn.Module,
        epoch: int,
        best_weights: dict[str, torch.Tensor] | None,
        best_epoch: int | None,
        best_loss: float,
        state: StateSnapshot | None = None,
    ) -> None:
        """Snapshot the model after `epoch` and write it, the best weights, the state and the pending rows
        in the background. best_weights: a copy of an earlier best epoch's weights not yet written (None
        when the best is unchanged since the last checkpoint, or is this epoch)."""
        self.wait()  # at most one checkpoint in flight: its memory, and its error, come back here
        weights = _weights_in(state, model) if state is not None else None
        if weights is None:
            weights = cpu_copy(model.state_dict())
        # When this epoch is the best, best.safetensors is a second name of its model file, not a second
        # copy (the seed network: 38 MB less per epoch). Otherwise the caller's copy, handed over.
        link_best = best_epoch == epoch
        best = None if link_best else best_weights
        if best_epoch is not None:
            self.meta.update(best_epoch=best_epoch, best_val_loss=best_loss)
        self.meta["epoch"] = epoch
        rows = {"metrics": self._metrics, "steps": self._steps}
        self._metrics, self._steps = [], []
        self.last_write = time.perf_counter()
        job = (weights, best, link_best, copy.deepcopy(self.meta), state, rows, epoch)
        self._pending = _Write(self._write, job)

    def _write(
        self,
        weights: dict,
        best: dict | None,
        link_best: bool,
        meta: dict,
        state: StateSnapshot | None,
        rows: dict,
        epoch: int,
    ) -> None:
        name = MODEL_FILE
        try:
            save_weights(weights, self.run_dir / MODEL_FILE)
            self._event("checkpoint-weights")
            name = BEST_FILE
            if link_best:
                link_atomically(self.run_dir / MODEL_FILE, self.run_dir / BEST_FILE)
            elif best is not None:
                save_weights(best, self.run_dir / BEST_FILE)
            name = META_FILE
            save_meta(meta, self.run_dir)
            if state is not None:
                slot = STATE_WEIGHTS[1] if self.state_weights == STATE_WEIGHTS[0] else STATE_WEIGHTS[0]
                name = slot
                link_atomically(self.run_dir / MODEL_FILE, self.run_dir / slot)
                name = STATE_FILE
                before_rename = lambda: self._event("checkpoint-state-written")  # noqa: E731
                write_state(self.run_dir, state, rows, before_rename, weights_file=slot)
                self.saved_epoch, self.state_weights = epoch, slot
                self._event("checkpoint-state")
            name = history.STEPS_FILE
            history.append_steps(self.run_dir, rows["steps"])
            self._event("checkpoint-steps")
            name = history.METRICS_FILE
            history.append_epochs(self.run_dir, rows["metrics"])
        except OSError as exc:
            last = f"epoch {self.saved_epoch}" if self.saved_epoch is not None else "none yet"
            raise BinclassError(
                f"{self.run_dir}: cannot write {name} ({exc.strerror or exc}); the last complete checkpoint "
                f"({last}) is intact: free space or fix the folder's permissions, then "
                f"`binclass train --resume {self.run_dir}`"
            ) from None

    def _event(self, name: str) -> None:
        if self.on_event is not None:
            self.on_event(name)

    def raise_if_failed(self) -> None:
        """The error of a checkpoint written meanwhile, if it failed (without waiting for one in flight)."""
        if self._pending is not None and not self._pending.thread.is_alive():
            self.wait()

    def wait(self) -> None:
        """Until the last checkpoint is on disk; its error, if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def save_meta(self) -> None:
        """model.json as it is now, after the checkpoints in flight."""
        if not self.enabled:
            return
        self.wait()
        save_meta(self.meta, self.run_dir)

    def close(self) -> None:
        """Wait for the checkpoint in flight (its error, if it failed)."""
        self.wait()


def _weights_in(state: StateSnapshot, model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The scored model's weights as the state snapshot already copied them, so that a checkpoint copies
    each tensor once; None if the snapshot lacks them."""
    names = [f"{state.scored}/{k}" for k in model.state_dict()]
    if not all(name in state.tensors for name in names):
        return None
    return {name.split("/", 1)[1]: state.tensors[name] for name in names}


class _Write:
    """One checkpoint written by a thread of its own, which ends with the write: a writer thread kept
    alive between checkpoints slowed every training pass (docs/benchmarks.md, "Measurements behind the
    code")."""

    def __init__(self, write: Callable[..., None], args: tuple) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                _lower_priority()
                write(*args)
            except BaseException as exc:  # handed to the training thread by result()
                self.error = exc

        self.thread = threading.Thread(target=run, name="binclass-checkpoint")
        self.thread.start()

    def result(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _lower_priority() -> None:
    """The writer yields the cores to training and writes in their idle moments (Linux: a thread's
    niceness is its own; measured in docs/benchmarks.md, "Measurements behind the code")."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
