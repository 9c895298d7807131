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
# "crop": a random crop of 70-100% of the side at a random place (what random-resized-crop and
# pad-and-crop do in fast small-data recipes), resized back, plus the flip. No rotation: it costs
# corners and helped nothing measurable here.
CROP_MIN_SCALE = 0.7
CROP_MAX_SHIFT = 0.15


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    min_scale: float = MIN_SCALE,
    max_shift: float = MAX_SHIFT,
    max_rotate_deg: float = MAX_ROTATE_DEG,
) -> torch.Tensor:
    """Per-image random zoom, shift and rotation of a float batch (N, C, H, W); borders are reflected.
    min_scale: the sampled window's side as a fraction of the image's (< 1 zooms in); max_shift: of the side."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, device=x.device, generator=generator)

    scale = uniform(min_scale, 1.0)  # < 1 samples a smaller window: zoom in
    angle = uniform(-max_rotate_deg, max_rotate_deg) * (math.pi / 180)
    tx, ty = uniform(-max_shift, max_shift) * 2, uniform(-max_shift, max_shift) * 2  # grid units span 2
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """x: float batch (N, C, H, W). mode: none | flip | crop (flip + zoom/shift) | standard (flip +
    zoom/shift/rotate)."""
    if mode == "none":
        return x
    x = random_flip(x, generator)
    if mode == "standard":
        x = random_affine(x, generator)
    if mode == "crop":
        x = random_affine(x, generator, CROP_MIN_SCALE, CROP_MAX_SHIFT, 0.0)
    return x
