"""The network of the posted script, unchanged except: it returns the logit (the loss applies the
sigmoid, which is numerically safe), its flatten size follows from the image size, and each block
pools before its ReLU. ReLU and 2x2 max pooling commute (both are monotone), so outputs and gradients
are the same, but the ReLU then runs on a quarter of the values."""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    # The conv stays at index 0, so weights saved with the posted (conv, ReLU, pool) order load unchanged.
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3), nn.MaxPool2d(2), nn.ReLU())


def side_after_blocks(image_size: int, blocks: int = 3) -> int:
    """Side length after `blocks` of (3x3 valid conv, 2x2 max pool): 150 -> 74 -> 36 -> 17."""
    side = image_size
    for _ in range(blocks):
        side = (side - 2) // 2
    if side < 1:
        raise ValueError(f"image size {image_size} is too small for the seed network (needs at least 22)")
    return side


class SeedNet(nn.Module):
    def __init__(self, image_size: int = 150) -> None:
        super().__init__()
        self.layer1 = _conv_block(3, 16)
        self.layer2 = _conv_block(16, 32)
        self.layer3 = _conv_block(32, 64)
        side = side_after_blocks(image_size)
        self.fc1 = nn.Linear(side * side * 64, 512)
        self.fc2 = nn.Linear(512, 1)
        self.relu = nn.ReLU()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 512 features the last layer reads (see models.PretrainedClassifier)."""
        out = self.layer3(self.layer2(self.layer1(x)))
        out = out.reshape(out.size(0), -1)  # reshape, not view: also valid for channels_last inputs
        return self.relu(self.fc1(out))

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.embed(x))
