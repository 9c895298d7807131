"""Optimizers, learning-rate schedules and the optionally compiled optimizer step."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..config import TrainConfig

# The eager optimizer update makes several full passes over every weight (square average, sqrt, divide,
# add). For a large layer on a CPU, like the seed network's 9.5M-weight fc1, that is a large share of
# each step; compiled, it is one fused pass. Below this many parameters the eager update is already
# cheap and compiling (seconds) would not pay for itself.
COMPILE_STEP_MIN_PARAMS = 2_000_000


def compile_step_wanted(setting: str, model: nn.Module, device: torch.device) -> bool:
    if setting != "auto":
        return setting == "on"
    return device.type == "cpu" and sum(p.numel() for p in model.parameters()) >= COMPILE_STEP_MIN_PARAMS


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, tensor_lr: bool = False, capturable: bool = False
) -> torch.optim.Optimizer:
    """tensor_lr: keep the learning rate in a 0-d tensor, so that a schedule changing it does not make a
    compiled step recompile. capturable: a step that can run inside a CUDA graph (not SGD)."""
    params = model.parameters()
    lr, wd = (torch.tensor(float(cfg.lr)) if tensor_lr else cfg.lr), cfg.weight_decay
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, capturable=capturable)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, capturable=capturable)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, capturable=capturable)
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd, nesterov=True)


@dataclass
class Schedule:
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    per_step: bool  # True: stepped after every batch; False: after every epoch

    def after_step(self) -> None:
        if self.scheduler is not None and self.per_step:
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.scheduler is not None and not self.per_step:
            self.scheduler.step()


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """lr factor at step t: a linear rise over warmup_steps, then a half cosine to 0 at total_steps."""

    def factor(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / (warmup_steps + 1)
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (t - warmup_steps) / span)))

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
    """cosine: after --warmup epochs of linear rise, anneals over every optimizer step of the run
    (smooth, to 0 at the last step); step decays by gamma every step_size epochs, so it is stepped
    once per epoch, as its definition means."""
    if cfg.scheduler == "cosine":
        total = max(1, cfg.epochs * steps_per_epoch)
        warmup = round(float(cfg.warmup or 0) * steps_per_epoch)
        return Schedule(torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup)), per_step=True)
    if cfg.scheduler == "step":
        step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(cfg.step_size or 1), gamma=cfg.gamma)
        return Schedule(step, per_step=False)
    return Schedule(None, per_step=False)


def step_function(optimizer: torch.optim.Optimizer, compiled: bool) -> Callable[[], None]:
    """optimizer.step, or a torch.compile'd version of it. The first step runs eagerly: it creates the
    optimizer's state, which the compiled step then updates in place (compiling the creation would make
    every later call fall back to slow code)."""
    if not compiled:
        return optimizer.step
    fused: list[Callable[[], None]] = [torch.compile(optimizer.step)]

    def step() -> None:
        if not optimizer.state:
            optimizer.step()
            return
        try:
            fused[0]()
        except Exception as exc:  # no C++ compiler, unsupported platform: compilation fails before any update
            warnings.warn(
                f"compiling the optimizer step failed ({type(exc).__name__}); using the eager step", stacklevel=2
            )
            fused[0] = optimizer.step
            optimizer.step()

    return step
