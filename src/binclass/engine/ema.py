"""An exponential moving average of a model's weights (and batch-norm statistics): the model that
is evaluated and saved when --ema is on. Averaging the last stretch of SGD steps lands nearer the
middle of the minimum than any single step, which steadies validation accuracy from seed to seed."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, half_life_steps: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = 0.5 ** (1.0 / max(half_life_steps, 1e-9))
        self.updates = 0
        # state_dict() tensors share storage with the modules: these lists stay current.
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self._float = [(a, b) for a, b in pairs if a.is_floating_point()]
        self._other = [(a, b) for a, b in pairs if not a.is_floating_point()]  # batch-norm step counters

    def resume_at(self, updates: int) -> None:
        """Continue an average that had taken `updates` steps (its weights restored by the caller)."""
        self.updates = updates

    @torch.no_grad()
    def update(self) -> None:
        """After each optimizer step. Early on the average follows the model closely (timm's warm-up of
        the decay), so the random initial weights do not linger in it."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        if self._float:
            torch._foreach_lerp_([a for a, _ in self._float], [b for _, b in self._float], 1.0 - decay)
        if self._other:  # one multi-tensor launch rather than one per batch-norm layer
            torch._foreach_copy_([a for a, _ in self._other], [b for _, b in self._other])
