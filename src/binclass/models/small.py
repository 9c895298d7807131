"""The default from-scratch network: a small residual net with batch norm, in the style of the
ResNet-9 that holds fast small-data training records on CIFAR-10, with one more downsampling step
for photos of 96-128 px.

Why this shape: batch norm after every conv trains stably at the high learning rates one-cycle
schedules use; the residual blocks add depth at no cost in stability; global average pooling means
no image-size-dependent head (any --image-size works) and few parameters to overfit ~2000 images."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),  # BN supplies the bias
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SmallNet(nn.Module):
    DROPOUT = 0.2  # fraction of pooled features dropped in training; curbs overfitting on ~2000 images

    def __init__(self, image_size: int = 128, width: int = 32) -> None:
        super().__init__()
        # Channels double while the resolution halves, which keeps the cost of each stage about even.
        w = (width, 2 * width, 4 * width, 8 * width)
        # The strided stem halves the resolution first: at full resolution even a few channels are costly.
        layers: list[nn.Module] = [conv_bn(3, w[0], stride=2)]
        for cin, cout in zip(w[:-1], w[1:]):
            layers += [conv_bn(cin, cout), nn.MaxPool2d(2), Residual(cout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(self.DROPOUT), nn.Linear(w[-1], 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the last layer reads (see models.PretrainedClassifier)."""
        return self.head[:-1](self.features(x))

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        return self.head[-1](features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.embed(x))
