"""fit(): the one entry point that trains a run, whatever the recipe."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..allocator import keep_freed_memory
from ..compare import correctness
from ..config import TrainConfig, parse_duration
from ..data.decode import default_workers
from ..data.health import Health, check_health, imbalance_advice, majority_share, with_feature_pairs
from ..data.scan import DataLayout
from ..device import resolve_device
from ..engine import distributed
from ..engine.distributed import World
from ..errors import BinclassError
from ..explain import import_gallery_tools
from ..phases import Phases
from ..run.checkpoints import EventHook
from ..run.events import require_tensorboard
from ..run.files import CONFIG_FILE
from ..run.output import RunOutput
from .budget import plan_epochs, plan_finetune, seconds_per_epoch
from .common import DataFindings, Log, RunFolder, prepare_data, scan
from .defaults import describe_choice
from .resolve import resolve
from .scratch import StepHook, fit_scratch


def fit(
    cfg: TrainConfig,
    overwrite: bool = False,
    resume: bool = False,
    log: Log = print,
    on_step: StepHook | None = None,
    on_event: EventHook | None = None,
) -> Path:
    """Train and write the run folder cfg.out. resume=True continues it from its last checkpoint (cfg is
    then the run's own config.json). The folder is locked while the run lives; the run's lines, and what
    libraries print meanwhile, are kept in its train.log. on_step(epoch, step, steps) runs after every
    optimizer step of a from-scratch run and on_event(name) at named points of the run (decoding,
    checkpoint writes, the report): tests stop the process there.

    Started by torchrun (several processes), each process trains a data-parallel replica; rank 0 alone
    prints and writes the run folder (engine.distributed)."""
    world = distributed.world_from_env()
    if not world.writer:
        log = _silent
    with RunOutput(log) as output:
        run = RunFolder(Path(cfg.out), overwrite, resume, output, writer=world.writer)
        try:
            if world.distributed:
                distributed.start(world, cfg.device)
            run_dir = _fit(cfg, run, output.log, on_step, on_event, world)
            if cfg.calibrate and world.writer:
                _calibrate(run_dir, output.log)
            return run_dir
        except BinclassError as exc:
            output.keep(f"error: {exc}")
            raise
        except RuntimeError as exc:
            if not (world.distributed and distributed.peer_stopped(exc)):
                raise
            error = BinclassError(
                f"rank {world.rank}: another process of this launch stopped (its own error is above); "
                f"{cfg.out} keeps its last checkpoint: resume with torchrun ... -m binclass train --resume {cfg.out}"
            )
            output.keep(f"error: {error}")
            raise error from None
        finally:
            run.release()
            distributed.stop()


def resume_config(run_dir: Path, data_dir: Path | str | None = None) -> TrainConfig:
    """The config a run folder was trained with, to continue it: its own settings, in that folder, with
    the data where they are now (data_dir, when they moved)."""
    cfg = TrainConfig.load(Path(run_dir) / CONFIG_FILE)
    return cfg.replace(out=str(run_dir), data_dir=str(data_dir) if data_dir is not None else cfg.data_dir)


def _calibrate(run_dir: Path, log: Log) -> None:
    from ..tuning import calibrate_run

    c = calibrate_run(run_dir)
    log(
        f"calibrated: temperature {c['temperature']:.3f} in model.json; on the {c['fitted_on']} ECE {c['ece_before']:.3f} -> "
        f"{c['ece_after']:.3f}, Brier {c['brier_before']:.4f} -> {c['brier_after']:.4f}; {c['note']}"
    )


def _search_health(layout: DataLayout, log: Log, workers: int) -> Health | None:
    """The duplicate search over the run's images, before training: beside it, its threads would slow the
    training threads that hold every core. None without imagehash."""
    try:
        import imagehash  # noqa: F401
    except ImportError:
        log("duplicates: not searched (pip install 'binclass[health]' to find copies across the splits)")
        return None
    return check_health(layout, workers)


def _health_findings(health: Health | None, log: Log) -> DataFindings | None:
    """The data's findings for finish_run, once val_predictions.csv is written: with the accuracy with and
    without leaked validation images."""
    if health is None:
        return None

    def findings(run_dir: Path, alike: list) -> list:
        from ..doctor.health import health_findings

        h = with_feature_pairs(health, alike)
        correct = correctness(run_dir)
        log(
            f"duplicates: {len(h.across())} pairs across train and validation, {len(h.within('train'))} within "
            f"train, {len(h.within('validation'))} within validation ({len(h.conflicting())} under both classes)"
        )
        advice = imbalance_advice(h.counts.get("train", {}))
        if advice:
            counts = ", ".join(f"{c} {n}" for c, n in h.counts["train"].items())
            log(f"imbalance: training has {counts} ({majority_share(h.counts['train']):.0%} one class): {advice}")
        found = health_findings(h, correct)
        for finding in found:
            log(f"doctor: {finding.severity} [{finding.id}] {finding.message}")
        return found

    return findings


def _silent(line: str) -> None:
    pass


def _within_budget(
    given: TrainConfig,
    cfg: TrainConfig,
    device: torch.device,
    data: tuple,
    world: World,
    phases: Phases,
    log: Log,
    train_images: int,
    pretrained: torch.nn.Module | None = None,
) -> TrainConfig:
    """The config resolved again with what fits in --time-budget (counted from the start of fit): the
    epochs of a from-scratch run, so that every setting that follows them (warm-up, weight average)
    follows them; the fine-tuning epochs of a pretrained one. Saved over the config.json written before
    the timing."""
    run_dir, _, train_x, val_x = data
    budget = parse_duration(cfg.time_budget)
    import_gallery_tools()
    if pretrained is None:
        epoch_seconds = seconds_per_epoch(cfg, device, train_x, val_x, run_dir)
        plan = plan_epochs(budget, time.perf_counter() - phases.started, epoch_seconds)
    else:
        plan = plan_finetune(cfg, device, pretrained, train_x, val_x, budget, time.perf_counter() - phases.started)
    cfg = resolve(given.replace(**plan.settings), world.size, train_images)
    cfg.save(run_dir / CONFIG_FILE)
    log(plan.describe(cfg.time_budget))
    phases.mark("timing")
    return cfg


def _fit(
    cfg: TrainConfig, run: RunFolder, log: Log, on_step: StepHook | None, on_event: EventHook | None, world: World
) -> Path:
    phases = Phases()
    chosen = cfg.model is not None
    given = cfg
    checked = resolve(cfg, world.size)  # every setting checked before the data folder is read
    if cfg.time_budget is not None and not run.resume:
        if cfg.epochs is not None and checked.from_scratch:
            raise BinclassError("give --epochs or --time-budget, not both: the budget chooses the epochs")
        if cfg.finetune:
            raise BinclassError("give --finetune or --time-budget, not both: the budget chooses the fine-tuning")
        if world.distributed:
            raise BinclassError("--time-budget sizes a run on one process; give --epochs under torchrun")
    layout = scan(cfg)
    cfg = resolve(cfg, world.size, len(layout.train))
    if cfg.tensorboard:
        require_tensorboard()  # before any decoding
    intro = describe_choice(cfg, chosen, len(layout.train))  # printed once the data and the folder are found usable
    keep_freed_memory()  # no page faults for the same tensors at every CPU step (see allocator)
    device = resolve_device(cfg.device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if not cfg.from_scratch:
        if world.distributed:
            raise BinclassError(
                f"--model {cfg.model}: the pretrained recipe trains on one process (its head takes seconds); "
                "start it without torchrun, or use --model small or seed for data-parallel training"
            )
        if run.resume:
            raise BinclassError("--resume is for the from-scratch models; a pretrained run is short, start it again")
        from .pretrained import fit_pretrained, pretrained_model

        model = pretrained_model(cfg, device)  # first: a missing weights file fails before any decoding
        phases.mark("model")
        data = prepare_data(cfg, device, run, log, on_event, intro, layout)
        health = _search_health(data[1], log, default_workers(cfg.workers))
        phases.mark("images")
        if cfg.time_budget is not None:
            cfg = _within_budget(given, cfg, device, data, world, phases, log, len(layout.train), model)
        return fit_pretrained(cfg, device, model, *data, log, phases, on_event, _health_findings(health, log))
    data = prepare_data(cfg, device, run, log, on_event, intro, layout)
    health = _search_health(data[1], log, default_workers(cfg.workers)) if world.writer else None
    phases.mark("images")
    if cfg.time_budget is not None and not run.resume:
        cfg = _within_budget(given, cfg, device, data, world, phases, log, len(layout.train))
    findings = _health_findings(health, log)
    return fit_scratch(cfg, device, *data, run.resume, log, phases, on_step, on_event, world, findings)
