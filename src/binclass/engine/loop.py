"""One epoch of training (train_one_epoch) and one pass of validation (evaluate), counting every sample;
the optimizers and schedules they step live in engine.optim, the epoch driver around them in
engine.driver."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import metrics
from ..data.sources import SliceSource
from .distributed import SINGLE, World, all_sum, bounds, gather_slices, shard
from .ema import WeightAverage
from .infer import Source, predict_logits, probabilities
from .optim import Schedule
from .step import StepRunner, training_step


@dataclass
class EpochStats:
    loss: float  # sample-weighted mean of the training objective over the epoch
    accuracy: float  # correct / n over every training sample of the epoch (model in train mode)
    n: int
    steps: list[dict]
    order: list[int]  # the epoch's shuffled sample order: step k used order[(k-1)*batch : k*batch]
    seconds: float = 0.0  # wall time of the training pass, up to its one host sync at the end


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
    world: World = SINGLE,
    frozen_norms: bool = False,
) -> EpochStats:
    """One pass over the training set; `inputs` turns a raw batch from the source into model input
    (for images: normalize and augment). Per-step values stay on the device until the epoch ends:
    one host sync per epoch, not one per step. autocast_dtype=torch.bfloat16 runs the forward pass
    in bf16 (the loss and the optimizer stay in fp32). label_smoothing moves the BCE targets to
    eps/2 and 1 - eps/2; ema, if given, is updated after every optimizer step. `runner` replaces the
    eager training_step (a GraphedStep built on it). With a world of several ranks, `model` is the DDP
    replica and each rank trains on its part of every global batch of `batch_size` (engine.distributed);
    the epoch's figures are summed over the ranks, so every rank returns those of the global batches.
    frozen_norms: batch-norm layers stay in inference mode (fine-tuning a pretrained network on a few
    images, whose batches would otherwise replace the statistics it was trained with)."""
    started = time.perf_counter()
    model.train()
    if frozen_norms:  # batch norm keeps normalizing with its running statistics, and does not update them
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    n = len(source)
    device = labels.device
    if runner is None:
        runner = functools.partial(
            training_step,
            model,
            optimizer,
            optimizer_step or optimizer.step,
            threshold=threshold,
            pos_weight=pos_weight,
            autocast_dtype=autocast_dtype,
        )
    order = torch.randperm(n, generator=shuffle_gen).to(device)  # the same on every rank: same seed
    n_steps = math.ceil(n / batch_size)
    if world.distributed:
        return _distributed_pass(
            runner, source, labels, order, inputs=inputs, optimizer=optimizer, schedule=schedule,
            batch_size=batch_size, label_smoothing=label_smoothing, ema=ema, progress=progress, world=world,
            epoch=epoch, started=started,
        )  # fmt: skip
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
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
    steps = step_rows(epoch, [float(v) for v in losses], corrects, step_sizes, lrs)
    return EpochStats(
        loss=float(loss_sum.item()) / n,
        accuracy=sum(corrects) / n,
        n=n,
        steps=steps,
        order=order.tolist(),
        seconds=seconds,
    )


def step_rows(epoch: int, losses: list[float], corrects: list[int], sizes: list[int], lrs: list[float]) -> list[dict]:
    """The epoch's steps.csv rows: per step its mean loss, accuracy, batch size and learning rate."""
    return [
        {
            "epoch": epoch,
            "step": i + 1,
            "loss": losses[i],
            "batch_acc": corrects[i] / sizes[i],
            "batch_size": sizes[i],
            "lr": lrs[i],
        }
        for i in range(len(sizes))
    ]


def _distributed_pass(
    runner: StepRunner,
    source: Source,
    labels: torch.Tensor,
    order: torch.Tensor,
    *,
    inputs: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    batch_size: int,
    label_smoothing: float,
    ema: WeightAverage | None,
    progress: Callable[[int, int], None] | None,
    world: World,
    epoch: int,
    started: float,
) -> EpochStats:
    """train_one_epoch's pass on one rank of several: the same global batches, this rank's part of each.
    runner: the eager training_step, which takes the rank's loss scale."""
    n, device = len(source), labels.device
    n_steps = math.ceil(n / batch_size)
    step_sums = torch.zeros(n_steps, dtype=torch.float64, device=device)  # summed loss of this rank's part
    step_correct = torch.zeros(n_steps, dtype=torch.int64, device=device)
    step_sizes: list[int] = []
    step_lrs: list[float] = []
    for i in range(n_steps):
        batch = order[i * batch_size : (i + 1) * batch_size]
        idx, scale = shard(batch, world), world.size / len(batch)
        empty = len(idx) == 0
        if empty:  # a last batch smaller than the world: this rank still joins the gradient sum, adding 0
            idx, scale = batch[:1], 0.0
        y = labels[idx]
        target = y * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else y
        step_lrs.append(float(optimizer.param_groups[0]["lr"]))
        out = runner(inputs(source.batch(idx)), target, y, loss_scale=scale)
        schedule.after_step()
        if ema is not None:
            ema.update()
        if not empty:
            step_sums[i] = out.loss_sum
            step_correct[i] = out.correct
        step_sizes.append(len(batch))
        if progress is not None:
            progress(i + 1, n_steps)
    all_sum(step_sums, world)  # one collective per epoch for the figures, none per step
    all_sum(step_correct, world)
    sums, corrects = step_sums.tolist(), step_correct.tolist()
    steps = step_rows(epoch, [total / size for total, size in zip(sums, step_sizes)], corrects, step_sizes, step_lrs)
    seconds = time.perf_counter() - started
    return EpochStats(
        loss=sum(sums) / n, accuracy=sum(corrects) / n, n=n, steps=steps, order=order.tolist(), seconds=seconds
    )


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
    world: World = SINGLE,
    temperature: float = 1.0,
    features: list[torch.Tensor] | None = None,
) -> Evaluation:
    """Metrics over every sample of a labeled set (plain, unweighted BCE as the loss). With several
    ranks, each scores its slice and every rank gets all the logits: each sample counted once. A
    calibrated run's temperature divides the logits first (model.json). features: receives each batch's
    features (one process only; see predict_logits)."""
    if world.distributed:
        start, stop = bounds(len(source), world)
        part = predict_logits(model, SliceSource(source, start, stop), mean, std, batch_size, device, tta=tta)
        logits = gather_slices(part.to(device), len(source), world).cpu()
    else:
        logits = predict_logits(model, source, mean, std, batch_size, device, tta=tta, features=features)
    if temperature != 1.0:
        logits = logits / temperature
    probs = probabilities(logits).numpy()
    logits_np = logits.numpy()
    return Evaluation(metrics.summarize(labels, logits_np, probs, threshold), logits_np, probs)
