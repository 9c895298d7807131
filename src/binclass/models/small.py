"""A from-scratch CNN that trains reliably on a few thousand images: batch norm after every conv
(stable at higher learning rates), global average pooling (no image-size-dependent head, few
parameters to overfit), dropout before the single logit."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),  # BN supplies the bias
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallNet(nn.Module):
    # Channel widths per stage: doubling while the resolution halves keeps the cost per stage even.
    WIDTHS = (32, 64, 128, 256)
    DROPOUT = 0.3  # fraction of pooled features dropped in training; curbs overfitting on ~2000 images

    def __init__(self, image_size: int = 150) -> None:
        super().__init__()
        w = self.WIDTHS
        # The strided stem halves the resolution first: most of the cost at 150 px is in the first layers.
        layers: list[nn.Module] = [conv_bn(3, w[0], stride=2)]
        for cin, cout in zip(w[:-1], w[1:]):
            layers += [conv_bn(cin, cout), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(self.DROPOUT), nn.Linear(w[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
