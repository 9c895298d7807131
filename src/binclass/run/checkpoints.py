"""Checkpoints: the weights files and model.json, written when due."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from .files import BEST_FILE, MODEL_FILE
from .weights import save_meta, save_weights


class Checkpoints:
    """model.safetensors, best.safetensors and model.json, written at most every `every` seconds (and
    whenever forced: the last epoch, an early stop). Between writes the best weights wait in memory
    (the caller keeps them). Writing the seed network's weights and state took 0.1-0.3 s on a 2-core
    CPU; its whole epoch took 0.28 s on an H200."""

    def __init__(self, run_dir: Path, meta: dict, every: float = 0.0) -> None:
        self.run_dir, self.meta, self.every = Path(run_dir), meta, every
        self.last_write = time.perf_counter()

    def due(self, force: bool = False) -> bool:
        return force or self.every <= 0 or time.perf_counter() - self.last_write >= self.every

    def write(
        self,
        model: nn.Module,
        epoch: int,
        best_weights: dict[str, torch.Tensor] | None,
        best_epoch: int | None,
        best_loss: float,
    ) -> None:
        """The model after `epoch`; the best weights when they changed since the last write (else None)."""
        save_weights(model, self.run_dir / MODEL_FILE)
        if best_weights is not None:
            save_weights(best_weights, self.run_dir / BEST_FILE)
        if best_epoch is not None:
            self.meta.update(best_epoch=best_epoch, best_val_loss=best_loss)
        self.meta["epoch"] = epoch
        self.save_meta()
        self.last_write = time.perf_counter()

    def save_meta(self) -> None:
        save_meta(self.meta, self.run_dir)
