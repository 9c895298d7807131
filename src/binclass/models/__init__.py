"""Model registry: name -> network and the input normalization it expects."""

from __future__ import annotations

from torch import nn

from .seed import SeedNet
from .small import SmallNet

# mean/std applied to pixels scaled to [0, 1]. The seed network saw plain ToTensor() inputs in the
# posted script, so it keeps them; the small network uses the ImageNet statistics.
NORMALIZATION = {
    "seed": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "small": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_BUILDERS = {"seed": SeedNet, "small": SmallNet}


def build_model(name: str, image_size: int) -> nn.Module:
    return _BUILDERS[name](image_size)


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return NORMALIZATION[name]
