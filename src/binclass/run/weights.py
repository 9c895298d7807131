"""model.safetensors, best.safetensors and model.json: everything predict needs, and no pickle anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import BinclassError
from ..models import build_model
from .files import BEST_FILE, META_FILE, MODEL_FILE


def replace_atomically(tmp: Path, final: Path) -> None:
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def save_weights(model: nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    """Write a model's (or a state dict's) weights to a temporary file in the same folder, flush, then
    rename: a crash never leaves half a file."""
    state = model if isinstance(model, dict) else model.state_dict()
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    replace_atomically(tmp, path)


def save_meta(meta: dict, run_dir: Path) -> None:
    path = Path(run_dir) / META_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    replace_atomically(tmp, path)


def load_meta(run_dir: Path) -> dict:
    path = Path(run_dir) / META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BinclassError(f"{path}: not found; give a run folder written by `binclass train`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BinclassError(f"{path}: unreadable ({exc}); retrain or restore the run folder") from None


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
