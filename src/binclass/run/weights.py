"""model.safetensors, best.safetensors and model.json: everything predict needs, and no pickle anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import BinclassError
from ..models import build_model
from .atomic import write_atomically
from .files import BEST_FILE, META_FILE, MODEL_FILE


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A contiguous CPU copy of every tensor: a snapshot that training can go on changing beside."""
    return {k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format) for k, v in state.items()}


def save_weights(model: nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    """A model's (or a state dict's) weights as safetensors, written atomically."""
    state = model if isinstance(model, dict) else model.state_dict()
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp)))


def save_meta(meta: dict, run_dir: Path) -> None:
    write_atomically(Path(run_dir) / META_FILE, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))


def load_meta(run_dir: Path) -> dict:
    path = Path(run_dir) / META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BinclassError(f"{path}: not found; give a run folder written by `binclass train`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BinclassError(f"{path}: unreadable ({exc}); retrain or restore the run folder") from None


def temperature_of(meta: dict) -> float:
    """model.json's temperature, which divides the logits before the sigmoid: 1 until a run is calibrated."""
    return float(meta.get("temperature", 1.0))


def load_model(run_dir: Path, checkpoint: str = "last") -> tuple[nn.Module, dict]:
    """Rebuild the network from model.json and load its safetensors weights (strict: every key, every shape)."""
    run_dir = Path(run_dir)
    meta = load_meta(run_dir)
    weights = run_dir / (BEST_FILE if checkpoint == "best" else MODEL_FILE)
    if not weights.exists():
        raise BinclassError(f"{weights}: not found; the run folder is incomplete (did training finish an epoch?)")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise BinclassError(f"{weights}: not a valid safetensors file ({exc}); retrain or restore it") from None
    model = build_model(meta["architecture"], int(meta["image_size"]), width=meta.get("width"))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise BinclassError(f"{weights}: weights do not fit the {meta['architecture']} network ({first})") from None
    model.eval()
    return model, meta
