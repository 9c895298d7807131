"""Model registry: name -> network and the input normalization it expects."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .seed import SeedNet
from .small import SmallNet

# mean/std applied to pixels scaled to [0, 1]. The seed network saw plain ToTensor() inputs in the
# posted script, so it keeps them; the small network uses the ImageNet statistics; the packaged
# EfficientNet-Lite0 weights were trained on inputs scaled as (x - 127) / 128.
NORMALIZATION = {
    "seed": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "small": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "efficientnet_lite0": ((0.498, 0.498, 0.498), (0.502, 0.502, 0.502)),
}
DEFAULT_IMAGE_SIZE = {"seed": 150, "small": 128}  # pretrained backbones: their own input size (224 for Lite0)
_BUILDERS = {"seed": SeedNet, "small": SmallNet}


class PretrainedClassifier(nn.Module):
    """A backbone that maps images to pooled features, and one linear logit on top."""

    def __init__(self, backbone: nn.Module, num_features: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, 1)

    # Every model: embed (images -> the features the last layer reads) and logit (those -> the logit);
    # forward is the two, the same operations in the same order. Out-of-distribution scores (binclass.ood)
    # read the features.
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.embed(x))


def _timm_name(name: str) -> str:
    return name.split(":", 1)[1] if name.startswith("timm:") else name


def build_model(
    name: str, image_size: int, pretrained: bool = False, weights: Path | None = None, width: int | None = None
) -> nn.Module:
    """The network, untrained unless pretrained=True (backbones only: weights from the packaged Lite0 file,
    a local --weights file, or timm's hub when online). width: the small network's first-stage channels."""
    if name == "small" and width is not None:
        return SmallNet(image_size, width)
    if name in _BUILDERS:
        return _BUILDERS[name](image_size)
    from . import pretrained as pre

    timm_name = _timm_name(name)
    if name == pre.LITE0:
        backbone = pre.lite0_imagenet() if pretrained else pre._timm().create_model(pre.LITE0, pretrained=False)
    else:
        backbone = pre.timm_model(timm_name, pretrained, weights) if pretrained else pre._timm().create_model(timm_name)
    backbone.reset_classifier(0)  # pooled features out
    return PretrainedClassifier(backbone, backbone.num_features)


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if name in NORMALIZATION:
        return NORMALIZATION[name]
    from .pretrained import _timm

    cfg = _timm().create_model(_timm_name(name), pretrained=False).pretrained_cfg
    return tuple(cfg["mean"]), tuple(cfg["std"])


def default_image_size(name: str) -> int:
    if name in DEFAULT_IMAGE_SIZE:
        return DEFAULT_IMAGE_SIZE[name]
    from .pretrained import _timm

    return int(_timm().create_model(_timm_name(name), pretrained=False).pretrained_cfg["input_size"][-1])
