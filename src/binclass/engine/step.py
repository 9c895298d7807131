"""One training step: forward, loss, backward and optimizer update on a batch, with no host sync."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .infer import probabilities


@dataclass
class StepOut:
    loss: torch.Tensor  # 0-d float32: the batch's mean objective
    loss_sum: torch.Tensor  # 0-d float64: its sum over the batch's samples
    correct: torch.Tensor  # 0-d int64: samples whose predicted class matches the label


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
    loss_scale: float | None = None,
) -> StepOut:
    """Forward, loss, backward and optimizer step on one batch, with no host sync: the same function runs
    eagerly and inside a captured CUDA graph (which needs autocast_cache=False). loss_scale: the loss is
    the batch's summed loss times this instead of its mean (a data-parallel rank's part of a global
    batch: see engine.distributed); `loss` is then that scaled sum."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(
        x.device.type,
        dtype=autocast_dtype or torch.bfloat16,
        enabled=autocast_dtype is not None,
        cache_enabled=autocast_cache,
    ):
        logits = model(x).reshape(-1)
    per_sample = F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=pos_weight, reduction="none")
    loss = per_sample.mean() if loss_scale is None else per_sample.sum() * loss_scale
    loss.backward()
    optimizer_step()
    with torch.no_grad():
        correct = ((probabilities(logits.detach()) >= threshold) == (y > 0.5)).sum()
        return StepOut(loss.detach(), per_sample.detach().double().sum(), correct)


StepRunner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], StepOut]  # (x, target, y) -> StepOut
