"""A TrainConfig as the user gave it: `validate` says whether it is coherent (before any file is read),
`resolve` turns it into the complete, frozen one that a run reads and saves. A run resolves once, when
it knows its training-set size; a budgeted run resolves once more, in `recipes.train`, with the epochs
the budget chose."""

from __future__ import annotations

import torch

from ..config import Environment, TrainConfig, check_settings
from ..device import resolve_device, resolve_precision
from ..engine.graphstep import graphs_wanted
from ..engine.optim import compile_step_wanted
from ..errors import BinclassError
from ..models import build_model
from ..run.folder import environment
from .defaults import DEFAULT_MODEL, default_eval_batch, recipe_defaults


def chosen_model(cfg: TrainConfig) -> str:
    return cfg.model or DEFAULT_MODEL


def validate(cfg: TrainConfig, world_size: int = 1, resume: bool = False) -> None:
    """Raise BinclassError, naming the option, when what the user gave cannot make a run: an unknown
    choice, a value out of range, two options that exclude each other. Reads no file, touches no device.
    resume: cfg is a stopped run's own config, to continue."""
    _coherent(cfg, world_size)
    from_scratch = cfg.replace(model=chosen_model(cfg)).from_scratch
    if resume and not from_scratch:
        raise BinclassError("--resume is for the from-scratch models; a pretrained run is short, start it again")
    if cfg.time_budget is not None and not resume:
        if cfg.epochs is not None and from_scratch:
            raise BinclassError("give --epochs or --time-budget, not both: the budget chooses the epochs")
        if cfg.finetune:
            raise BinclassError("give --finetune or --time-budget, not both: the budget chooses the fine-tuning")
        if world_size > 1:
            raise BinclassError("--time-budget sizes a run on one process; give --epochs under torchrun")


def _coherent(cfg: TrainConfig, world_size: int) -> None:
    """What holds for every config, given or resolved: each setting in range, the model's recipe able to
    run as launched."""
    check_settings(cfg)
    model = chosen_model(cfg)
    if cfg.replace(model=model).from_scratch:
        if world_size > 1 and cfg.cuda_graphs == "on":
            raise BinclassError("--cuda-graphs on is for one process; drop it under torchrun")
        return
    if cfg.cuda_graphs == "on":
        raise BinclassError("--cuda-graphs is for the from-scratch models (seed, small); use --cuda-graphs off")
    if world_size > 1:
        raise BinclassError(
            f"--model {model}: the pretrained recipe trains on one process (its head takes seconds); "
            "start it without torchrun, or use --model small or seed for data-parallel training"
        )


def resolve(cfg: TrainConfig, world_size: int = 1, train_images: int | None = None) -> TrainConfig:
    """Recipe defaults for every unset setting, every "auto" decided (precision, the compiled optimizer
    step), the device resolved (a missing GPU fails here, before any decoding), the evaluation batch
    chosen, and the Environment recorded. Resolving a resolved config again changes only its
    environment (a resumed run on another machine). world_size: the processes of a torchrun launch;
    --batch-size stays the global batch. train_images: the training set's size, which sizes the small
    recipe's batch and rate (None: its 2000-image values)."""
    cfg = cfg.replace(model=chosen_model(cfg))
    _coherent(cfg, world_size)
    device = resolve_device(cfg.device)
    cfg = cfg.replace(**recipe_defaults(cfg, device.type, train_images))
    check_settings(cfg)
    eval_batch_size = cfg.eval_batch_size or default_eval_batch(device.type)
    env = Environment(**environment(device), processes=world_size)
    if not cfg.from_scratch:  # frozen features and a linear head, in fp32
        return cfg.replace(eval_batch_size=eval_batch_size, precision="fp32", compile_optimizer="off", environment=env)
    if world_size > 1 and cfg.batch_size < world_size:
        raise BinclassError(
            f"--batch-size {cfg.batch_size} is the global batch: give at least one image per process ({world_size})"
        )
    graphed = graphs_wanted(cfg.cuda_graphs, device, cfg.optimizer)
    if graphed and cfg.compile_optimizer == "on":
        raise BinclassError("--cuda-graphs on replays the eager optimizer step; drop --compile-optimizer on")
    with torch.device("meta"):  # the weight count decides; no memory, no random numbers drawn
        network = build_model(cfg.model, cfg.image_size, width=cfg.width)
    # A budgeted run is timed on eager steps before it starts, and a compile would spend its seconds
    # inside the first epoch: auto leaves the step eager there.
    wanted = "off" if cfg.time_budget is not None and cfg.compile_optimizer == "auto" else cfg.compile_optimizer
    compiled = not graphed and compile_step_wanted(wanted, network, device)
    return cfg.replace(
        eval_batch_size=eval_batch_size,
        precision=resolve_precision(cfg.precision, device),
        compile_optimizer="on" if compiled else "off",
        environment=env,
    )
