"""The training loop as a few named functions: make_optimizer, make_scheduler, train_one_epoch, evaluate."""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics
from .config import TrainConfig
from .ema import WeightAverage
from .graphstep import StepOut
from .infer import Source, predict_logits, probabilities


# The eager optimizer update makes several full passes over every weight (square average, sqrt, divide,
# add). For a large layer on a CPU, like the seed network's 9.5M-weight fc1, that is a large share of
# each step; compiled, it is one fused pass. Below this many parameters the eager update is already
# cheap and compiling (seconds) would not pay for itself.
COMPILE_STEP_MIN_PARAMS = 2_000_000


def compile_step_wanted(setting: str, model: nn.Module, device: torch.device) -> bool:
    if setting != "auto":
        return setting == "on"
    return device.type == "cpu" and sum(p.numel() for p in model.parameters()) >= COMPILE_STEP_MIN_PARAMS


def make_optimizer(model: nn.Module, cfg: TrainConfig, tensor_lr: bool = False,
                   capturable: bool = False) -> torch.optim.Optimizer:  # fmt: skip
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
            warnings.warn(f"compiling the optimizer step failed ({type(exc).__name__}); using the eager step")
            fused[0] = optimizer.step
            optimizer.step()

    return step


@dataclass
class EpochStats:
    loss: float  # sample-weighted mean of the training objective over the epoch
    accuracy: float  # correct / n over every training sample of the epoch (model in train mode)
    n: int
    steps: list[dict]
    order: list[int]  # the epoch's shuffled sample order: step k used order[(k-1)*batch : k*batch]
    seconds: float = 0.0  # wall time of the training pass, up to its one host sync at the end


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    optimizer_step: Callable[[], None],
    x: torch.Tensor,
    target: torch.Tensor,
    y: torch.Tensor,
    *,
    threshold: float,
    pos_weight: torch.Tensor | None,
    autocast_dtype: torch.dtype | None = None,
    autocast_cache: bool = True,
) -> StepOut:
    """Forward, loss, backward and optimizer step on one batch, with no host sync: the same function runs
    eagerly and inside a captured CUDA graph (which needs autocast_cache=False)."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None,
                        cache_enabled=autocast_cache):  # fmt: skip
        logits = model(x).reshape(-1)
    per_sample = F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=pos_weight, reduction="none")
    loss = per_sample.mean()
    loss.backward()
    optimizer_step()
    with torch.no_grad():
        correct = ((probabilities(logits.detach()) >= threshold) == (y > 0.5)).sum()
        return StepOut(loss.detach(), per_sample.detach().double().sum(), correct)


StepRunner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], StepOut]  # (x, target, y) -> StepOut


def train_one_epoch(
    model: nn.Module,
    source: Source,
    labels: torch.Tensor,
    *,
    inputs: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    optimizer_step: Callable[[], None] | None = None,
    batch_size: int,
    threshold: float,
    pos_weight: torch.Tensor | None,
    shuffle_gen: torch.Generator,
    epoch: int,
    autocast_dtype: torch.dtype | None = None,
    label_smoothing: float = 0.0,
    ema: WeightAverage | None = None,
    progress: Callable[[int, int], None] | None = None,
    runner: StepRunner | None = None,
) -> EpochStats:
    """One pass over the training set; `inputs` turns a raw batch from the source into model input
    (for images: normalize and augment). Per-step values stay on the device until the epoch ends:
    one host sync per epoch, not one per step. autocast_dtype=torch.bfloat16 runs the forward pass
    in bf16 (the loss and the optimizer stay in fp32). label_smoothing moves the BCE targets to
    eps/2 and 1 - eps/2; ema, if given, is updated after every optimizer step. `runner` replaces the
    eager training_step (a GraphedStep built on it)."""
    started = time.perf_counter()
    model.train()
    n = len(source)
    device = labels.device
    if runner is None:
        runner = functools.partial(training_step, model, optimizer, optimizer_step or optimizer.step,
                                   threshold=threshold, pos_weight=pos_weight, autocast_dtype=autocast_dtype)  # fmt: skip
    order = torch.randperm(n, generator=shuffle_gen).to(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_steps = math.ceil(n / batch_size)
    # Filled in place: a new 0-d tensor per step would leave hundreds of small long-lived blocks
    # scattered through the kept heap (see allocator), splitting the holes the next step's activations need.
    step_losses = torch.empty(n_steps, dtype=torch.float32, device=device)
    step_correct = torch.empty(n_steps, dtype=torch.int64, device=device)
    step_sizes: list[int] = []
    step_lrs: list[float | torch.Tensor] = []  # a device tensor's value (a graph's rate) is read after the sync
    for step in range(n_steps):
        idx = order[step * batch_size : (step + 1) * batch_size]
        x = inputs(source.batch(idx))
        y = labels[idx]
        target = y * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else y
        lr = optimizer.param_groups[0]["lr"]
        step_lrs.append(lr.detach().clone() if isinstance(lr, torch.Tensor) and lr.device.type != "cpu" else float(lr))
        out = runner(x, target, y)
        schedule.after_step()
        if ema is not None:
            ema.update()
        loss_sum += out.loss_sum
        step_losses[step] = out.loss
        step_correct[step] = out.correct
        step_sizes.append(len(idx))
        if progress is not None:
            progress(step + 1, n_steps)
    losses = step_losses.tolist()  # the epoch's host sync: every step has finished on the device
    corrects = step_correct.tolist()
    lrs = [float(lr) for lr in step_lrs]  # no wait left: the device has finished every step
    seconds = time.perf_counter() - started
    steps = [
        {"epoch": epoch, "step": i + 1, "loss": float(losses[i]), "batch_acc": corrects[i] / step_sizes[i],
         "batch_size": step_sizes[i], "lr": lrs[i]}
        for i in range(n_steps)
    ]  # fmt: skip
    return EpochStats(loss=float(loss_sum.item()) / n, accuracy=sum(corrects) / n, n=n, steps=steps,
                      order=order.tolist(), seconds=seconds)  # fmt: skip


@dataclass
class Evaluation:
    metrics: dict
    logits: np.ndarray
    probs: np.ndarray


def evaluate(
    model: nn.Module,
    source: Source,
    labels: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    threshold: float,
    batch_size: int,
    device: torch.device,
    tta: bool = False,
) -> Evaluation:
    """Metrics over every sample of a labeled set (plain, unweighted BCE as the loss)."""
    logits = predict_logits(model, source, mean, std, batch_size, device, tta=tta)
    probs = probabilities(logits).numpy()
    logits_np = logits.numpy()
    return Evaluation(metrics.summarize(labels, logits_np, probs, threshold), logits_np, probs)
