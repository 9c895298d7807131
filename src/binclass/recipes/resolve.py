"""A TrainConfig as the user gave it -> the complete, frozen one a run reads and saves. Done once."""

from __future__ import annotations

import torch

from ..config import DEVICES, MODELS, TrainConfig, check_settings
from ..device import resolve_device, resolve_precision
from ..engine.graphstep import graphs_wanted
from ..engine.optim import compile_step_wanted
from ..errors import BinclassError
from ..models import build_model
from ..run.folder import environment
from .defaults import DEFAULT_MODEL, default_eval_batch, recipe_defaults


def resolve(cfg: TrainConfig, world_size: int = 1, train_images: int | None = None) -> TrainConfig:
    """Recipe defaults for every unset setting, every setting checked, the device resolved (a missing GPU
    fails here, before any decoding), the evaluation batch chosen, and the environment recorded in
    `extra`. Resolving a resolved config again changes only `extra` (a resumed run on another machine).
    world_size: the processes of a torchrun launch; --batch-size stays the global batch. train_images:
    the training set's size, which sizes the small recipe's batch and rate (None: its 2000-image values)."""
    if cfg.model is None:
        cfg = cfg.replace(model=DEFAULT_MODEL)
    if not cfg.model.startswith("timm:") and cfg.model not in MODELS:
        raise BinclassError(f"--model {cfg.model!r} is not one of: {', '.join(MODELS)}, timm:NAME")
    if cfg.device not in DEVICES:
        raise BinclassError(f"--device {cfg.device!r} is not one of: {', '.join(DEVICES)}")
    device = resolve_device(cfg.device)
    cfg = cfg.replace(**recipe_defaults(cfg, device.type, train_images))
    check_settings(cfg)
    eval_batch_size = cfg.eval_batch_size or default_eval_batch(device.type)
    if not cfg.from_scratch:
        if cfg.cuda_graphs == "on":
            raise BinclassError("--cuda-graphs is for the from-scratch models (seed, small); use --cuda-graphs off")
        extra = {**environment(device), "precision": "fp32", "recipe": "frozen features + linear head"}
        return cfg.replace(eval_batch_size=eval_batch_size, extra=extra)
    if world_size > 1:
        if cfg.batch_size < world_size:
            raise BinclassError(
                f"--batch-size {cfg.batch_size} is the global batch: give at least one image per process ({world_size})"
            )
        if cfg.cuda_graphs == "on":
            raise BinclassError("--cuda-graphs on is for one process; drop it under torchrun")
        cfg = cfg.replace(cuda_graphs="off")
    graphed = graphs_wanted(cfg.cuda_graphs, device, cfg.optimizer)
    if graphed and cfg.compile_optimizer == "on":
        raise BinclassError("--cuda-graphs on replays the eager optimizer step; drop --compile-optimizer on")
    with torch.device("meta"):  # the weight count decides; no memory, no random numbers drawn
        network = build_model(cfg.model, cfg.image_size, width=cfg.width)
    # A budgeted run is timed on eager steps before it starts, and a compile would spend its seconds
    # inside the first epoch: auto leaves the step eager there.
    wanted = "off" if cfg.time_budget is not None and cfg.compile_optimizer == "auto" else cfg.compile_optimizer
    compiled = not graphed and compile_step_wanted(wanted, network, device)
    extra = {
        **environment(device),
        "precision": resolve_precision(cfg.precision, device),
        "compiled_optimizer_step": compiled,
        "cuda_graphs": graphed,
        "processes": world_size,  # data-parallel ranks; batch_size is the global batch
    }
    return cfg.replace(eval_batch_size=eval_batch_size, extra=extra)
