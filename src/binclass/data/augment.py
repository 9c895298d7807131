"""Batched augmentation on the training device, with independent random parameters per image."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# "standard": zoom in up to 1/0.8 = 1.25x, shift up to 10% of the side, rotate up to 10 degrees:
# moderate changes that keep a cat a cat at 150 px, as in the Keras small-data recipe.
MIN_SCALE = 0.8
MAX_SHIFT = 0.1
MAX_ROTATE_DEG = 10.0


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random zoom, shift and rotation of a float batch (N, C, H, W); borders are reflected."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, device=x.device, generator=generator)

    scale = uniform(MIN_SCALE, 1.0)  # < 1 samples a smaller window: zoom in
    angle = uniform(-MAX_ROTATE_DEG, MAX_ROTATE_DEG) * (math.pi / 180)
    tx, ty = uniform(-MAX_SHIFT, MAX_SHIFT) * 2, uniform(-MAX_SHIFT, MAX_SHIFT) * 2  # grid units span 2
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """x: float batch (N, C, H, W). mode: none | flip | standard (flip + zoom/shift/rotate)."""
    if mode == "none":
        return x
    x = random_flip(x, generator)
    if mode == "standard":
        x = random_affine(x, generator)
    return x
