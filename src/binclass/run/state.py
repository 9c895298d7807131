"""The full training state at each checkpoint, for --resume: model, weight average, optimizer, scheduler,
the counters of best-model tracking and early stopping, and every RNG state. One safetensors file (tensors) whose metadata
holds the rest as JSON, written to a temporary file, flushed and renamed: it is always complete."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ..errors import BinclassError
from .atomic import write_atomically
from .files import STATE_FILE
from .weights import cpu_copy


def _to_json(value: object) -> object:
    """JSON-able copy; 0-d tensors (a tensor learning rate) become {"__tensor__": x}."""
    if isinstance(value, torch.Tensor):
        return {"__tensor__": value.item()}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: object) -> object:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return torch.tensor(value["__tensor__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, rest = {}, {"param_groups": _to_json(state["param_groups"]), "state": {}}
    for idx, entry in state["state"].items():
        rest["state"][str(idx)] = {}
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{name}"] = value
            else:
                rest["state"][str(idx)][name] = value
    return tensors, rest


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict = {int(idx): dict(values) for idx, values in rest["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": _from_json(rest["param_groups"])}


@dataclass
class StateSnapshot:
    """The training state at one moment, copied off the live objects: safe to write from another thread."""

    tensors: dict[str, torch.Tensor]
    meta: dict
    scored: str = "model"  # whose weights are validated and saved: "ema" (the weight average) when there is one


def snapshot_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: object | None,
    generators: dict[str, torch.Generator],
    counters: dict,
    ema: nn.Module | None = None,
    ema_updates: int | None = None,
) -> StateSnapshot:
    """counters: the JSON-able state of the run's trackers (last completed epoch, best-model tracking,
    early stopping). ema: the weight average's model, updated ema_updates times. Every tensor is copied."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema/{k}": v for k, v in ema.state_dict().items()})
    optim_tensors, optim_rest = _split_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    for name, gen in generators.items():
        tensors[f"rng/{name}"] = gen.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = s
    np_state = np.random.get_state()
    meta = {
        "progress": dict(counters),
        "ema_updates": ema_updates if ema is not None else None,
        "optimizer": optim_rest,
        "scheduler": _to_json(scheduler.state_dict()) if scheduler is not None else None,
        "python_random": random.getstate(),
        "numpy_random": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    return StateSnapshot(cpu_copy(tensors), json.loads(json.dumps(meta)), "ema" if ema is not None else "model")


def write_state(
    run_dir: Path,
    snapshot: StateSnapshot,
    rows: dict | None = None,
    before_rename: Callable[[], None] | None = None,
    weights_file: str | None = None,
) -> None:
    """state.safetensors, atomically. rows: the history rows ({"metrics": [...], "steps": [...]}) of the
    epochs this checkpoint completes, kept in it so that a resume can restore them whatever happened to
    the history files after the state was written. weights_file: a file of the run folder that already
    holds the scored model's weights (run.files.STATE_WEIGHTS): the state names it instead of holding
    them a second time."""
    tensors = snapshot.tensors
    meta = {**snapshot.meta, "rows": rows, "weights_file": weights_file, "weights_of": snapshot.scored}
    if weights_file is not None:
        tensors = {k: v for k, v in tensors.items() if not k.startswith(f"{snapshot.scored}/")}
    header = {"binclass_state": json.dumps(meta)}
    write_atomically(
        Path(run_dir) / STATE_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=header), before_rename
    )


@dataclass
class Restored:
    counters: dict  # the trackers' state: last completed epoch, best loss and epoch, epochs since the best
    ema_updates: int | None
    rows: dict | None  # the history rows of the epochs the checkpoint completed (None: written by an older binclass)
    weights_file: str | None = None  # the file the state takes the scored weights from (None: it holds them)


def load_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: object | None,
    generators: dict[str, torch.Generator],
    ema: nn.Module | None = None,
) -> Restored:
    """Restore everything write_state wrote into the live objects. Only safetensors is read: a pickle in
    its place is refused without being run."""
    path = Path(run_dir) / STATE_FILE
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["binclass_state"])
        tensors = load_file(str(path))
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise BinclassError(f"{path}: not a binclass training state ({exc}); it was not loaded") from None
    weights_file = meta.get("weights_file")
    if weights_file is not None:
        scored = meta["weights_of"]
        weights = Path(run_dir) / weights_file
        try:
            tensors.update({f"{scored}/{k}": v for k, v in load_file(str(weights)).items()})
        except (SafetensorError, OSError) as exc:
            raise BinclassError(f"{weights}: the weights of {path.name} are missing or damaged ({exc})") from None
    model.load_state_dict({k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}, strict=True)
    if ema is not None:
        ema.load_state_dict({k[len("ema/") :]: v for k, v in tensors.items() if k.startswith("ema/")}, strict=True)
    optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(_from_json(meta["scheduler"]))
    torch.set_rng_state(tensors["rng/torch"])
    for name, gen in generators.items():
        gen.set_state(tensors[f"rng/{name}"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda")]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = meta["python_random"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy_random"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    ema_updates = int(meta["ema_updates"]) if meta.get("ema_updates") is not None else None
    return Restored(dict(meta["progress"]), ema_updates, meta.get("rows"), weights_file)
