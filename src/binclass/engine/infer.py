"""uint8 image batches -> model inputs -> logits. Training's validation, predict and evaluate all
go through these functions, so the same image always gets the same probability."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from ..data.sources import Source


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """On the device, in channels_last: the layout oneDNN and cuDNN run convolutions fastest in."""
    return model.to(device=device, memory_format=torch.channels_last)


def prepare(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> normalized float32 (x / 255 - mean) / std, channels_last, on the same device.
    Kept as three in-place passes: a fused x * scale + shift is a little faster but moves the last bit of
    some inputs, and with them every recorded result. The mean and std are applied along rows of W * C
    values (channels_last memory is N, H, W, C) rather than broadcast over a channel dimension whose
    innermost loop is 3 values long; every element still gets the same operations in the same order:
    bit-identical (both measured in docs/benchmarks.md, "Measurements behind the code")."""
    x = images.contiguous(memory_format=torch.channels_last).float().div_(255.0)
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).view(n * h, w * c)  # a view (view, not reshape: never a silent copy)
    rows.sub_(_along_row(tuple(mean), x.dtype, x.device, c, w))
    rows.div_(_along_row(tuple(std), x.dtype, x.device, c, w))
    return x


@functools.lru_cache(maxsize=16)
def _along_row(
    values: tuple[float, ...], dtype: torch.dtype, device: torch.device, channels: int, width: int
) -> torch.Tensor:
    """One value per channel (or one for all), repeated for each of `width` pixels of a row. Made once
    per run and size, not per batch (on a GPU each would be a host-to-device copy); only ever read."""
    return torch.tensor(values, dtype=dtype, device=device).expand(channels).repeat(width)


def inference_batches(source: Source, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """The source in order, batch_size items at a time, on the device: the batching that validation,
    predict and feature extraction share (in fp32, batch composition can move the last bits)."""
    for start in range(0, len(source), batch_size):
        yield source.batch(slice(start, start + batch_size)).to(device, non_blocking=True)


def predict_logits(
    model: nn.Module,
    source: Source,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    device: torch.device,
    tta: bool = False,
    inputs: Callable[[torch.Tensor], torch.Tensor] | None = None,
    features: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits (N,) as float32 on the CPU; model in eval mode, no autograd, always fp32 (so that
    predict on any machine reproduces the validation numbers of training exactly).
    tta=True averages the logits of each image and its mirror image. `inputs` replaces the image
    normalization for sources that hold something else (cached features). features: a list that
    receives each batch's features (model.embed, of the image itself), on the CPU; the logits are the
    same either way (forward is embed then logit)."""
    model.eval()
    # Written in place, as the training loop's per-step values are: a kept small tensor per batch sits
    # between the large blocks that the next batch's activations would reuse (see allocator).
    out = torch.empty(len(source), dtype=torch.float32, device=device)
    with torch.inference_mode():
        start = 0
        for batch in inference_batches(source, batch_size, device):
            x = inputs(batch) if inputs is not None else prepare(batch, mean, std)
            if features is not None:
                embedded = model.embed(x)
                features.append(embedded.float().cpu())
                logits = model.logit(embedded).float().reshape(-1)
            else:
                logits = model(x).float().reshape(-1)
            if tta:
                logits = (logits + model(x.flip(-1)).float().reshape(-1)) / 2
            out[start : start + len(logits)] = logits
            start += len(logits)
    return out.cpu()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits.float())


def extract_features(
    backbone: torch.nn.Module,
    source: Source,
    mean,
    std,
    batch_size: int,
    device: torch.device,
    flip: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Pooled backbone features (N, F), fp32, in the batches that predict uses; progress(done, total) after
    each batch."""
    backbone.eval()
    out = []
    with torch.inference_mode():
        for batch in inference_batches(source, batch_size, device):
            x = prepare(batch, mean, std)
            out.append(backbone(x.flip(-1) if flip else x).float())
            if progress is not None:
                progress(sum(len(o) for o in out), len(source))
    return torch.cat(out)
