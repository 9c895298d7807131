"""The one place that turns --device and --precision settings into what a run uses."""

from __future__ import annotations

import torch

from .errors import BinclassError


def resolve_device(name: str) -> torch.device:
    """auto: the GPU when PyTorch sees one, else the CPU. cuda without a GPU is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BinclassError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """bf16 pays off only where the hardware has bf16 arithmetic: CUDA GPUs from Ampere on,
    CPUs with AVX512-BF16 or AMX. Elsewhere it is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return name
