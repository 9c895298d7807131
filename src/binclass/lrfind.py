"""binclass lr-find: the learning-rate range test (Smith 2015; fastai's lr_find). Train for a few
batches while the learning rate grows exponentially; plot the smoothed loss against it; suggest the
rate where the loss falls fastest, well before it blows up."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data.augment import augment_batch
from .data.sources import make_source
from .device import resolve_device
from .engine.infer import prepare, prepare_model
from .engine.optim import make_optimizer
from .engine.step import training_step
from .models import build_model, normalization
from .recipes.common import scan, seed_everything
from .recipes.resolve import resolve

SMOOTHING = 0.98  # exponential moving average of the loss, debiased: single batches are too noisy to read
STOP_FACTOR = 4.0  # stop once the smoothed loss is 4x its best: it is diverging


@dataclass
class LrFind:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggestion: float
    rise_lr: float  # where the smoothed loss first rose 5% above its best: the edge of stability
    rule: str  # how the suggestion was chosen


def lr_range_test(cfg: TrainConfig, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100) -> LrFind:
    cfg = resolve(cfg.replace(lr=start_lr))
    device = resolve_device(cfg.device)
    layout = scan(cfg)  # the training images a run of cfg trains on, in any form
    source, good, _, _ = make_source(layout.train.paths, cfg.image_size, cfg.cache, device, cfg.workers)
    labels = torch.tensor([layout.train.labels[i] for i in good], dtype=torch.float32, device=device)
    seed_everything(cfg.seed)
    model = prepare_model(build_model(cfg.model, cfg.image_size, width=cfg.width), device).train()
    mean, std = normalization(cfg.model)
    optimizer = make_optimizer(model, cfg)
    factor = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    gen = torch.Generator().manual_seed(cfg.seed)
    aug = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    lrs, smoothed, avg, best = [], [], 0.0, math.inf
    order = torch.randperm(len(source), generator=gen)
    for i in range(steps):
        lr = start_lr * factor**i
        for group in optimizer.param_groups:
            group["lr"] = lr
        start = (i * cfg.batch_size) % len(source)
        idx = order[start : start + cfg.batch_size]
        if len(idx) < cfg.batch_size:  # wrap around: a fresh shuffle
            order = torch.randperm(len(source), generator=gen)
            idx = order[: cfg.batch_size]
        x = augment_batch(prepare(source.batch(idx.to(device)), mean, std), cfg.augment, aug)
        y = labels[idx.to(device)]
        out = training_step(model, optimizer, optimizer.step, x, y, y, threshold=cfg.threshold, pos_weight=None)
        value = float(out.loss.item())  # the test needs every value at once to decide when to stop
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        debiased = avg / (1 - SMOOTHING ** (i + 1))
        if not math.isfinite(debiased) or debiased > STOP_FACTOR * best:
            break
        best = min(best, debiased)
        lrs.append(lr)
        smoothed.append(debiased)
    return LrFind(lrs, smoothed, *suggest(lrs, smoothed))


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, float, str]:
    """(suggested lr, lr where the loss started to rise, rule used).
    If the smoothed loss falls clearly (5% below where it started) before it rises: the lr of its
    steepest fall. If it never does (a network that needs many steps at a small rate before it learns,
    like the seed network), a tenth of the lr where the loss first rose 5% above its best: the classic
    "an order of magnitude below where it blows up"."""
    if len(lrs) < 5:
        first = lrs[0] if lrs else float("nan")
        return first, first, "too few steps"
    loss = np.asarray(losses)
    running_min = np.minimum.accumulate(loss)
    rising = np.flatnonzero(loss > 1.05 * running_min)
    edge_i = int(rising[0]) if len(rising) else len(lrs) - 1
    edge = float(lrs[edge_i])
    if running_min[edge_i] < 0.95 * loss[0]:
        lo = len(lrs) // 10  # the moving average is still settling over the first tenth
        if edge_i - lo >= 2:
            grads = np.gradient(loss[lo : edge_i + 1], np.log10(lrs[lo : edge_i + 1]))
            return float(lrs[lo + int(np.argmin(grads))]), edge, "steepest fall of the loss"
    return edge / 10, edge, "a tenth of where the loss started to rise"


def plot_lr_find(result: LrFind, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    from .report.plots import finish_figure  # first: it selects the Agg backend

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, color="tab:blue")
    ax.axvline(result.suggestion, color="tab:orange", ls="--", label=f"suggested {result.suggestion:.2g}")
    ax.axvline(result.rise_lr, color="grey", ls=":", label=f"loss starts to rise {result.rise_lr:.2g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed training loss", title=title)
    finish_figure(fig, path, (ax,))
