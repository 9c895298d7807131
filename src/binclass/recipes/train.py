"""fit(): the one entry point that trains a run, whatever the recipe."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import torch

from ..allocator import keep_freed_memory
from ..config import Environment, TrainConfig, parse_duration
from ..data.decode import default_workers
from ..data.health import Health, check_health
from ..data.scan import DataLayout
from ..device import resolve_device
from ..engine import distributed
from ..engine.distributed import World
from ..errors import BinclassError
from ..explain import import_gallery_tools
from ..phases import Phases
from ..run.events import require_tensorboard
from ..run.files import CONFIG_FILE
from ..run.hooks import EventHook, Log, RunHooks, StepHook, silent
from ..run.output import RunOutput
from ..track import open_tracker, preflight
from .budget import plan_epochs, plan_finetune, seconds_per_epoch, time_finetune
from .common import PreparedData, RunContext, RunFolder, cache_root, prepare_data, scan
from .defaults import describe_choice
from .resolve import resolve, validate
from .scratch import fit_scratch


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
    with RunOutput(log if world.writer else silent) as output:
        run = RunFolder(Path(cfg.out), overwrite, resume, output, writer=world.writer)
        hooks = RunHooks(output.log, on_step, on_event, keep=output.keep)
        try:
            if world.distributed:
                distributed.start(world, cfg.device)
            run_dir = _fit(cfg, run, hooks, world)
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


def arithmetic_moved(before: Environment | None, now: Environment | None) -> str:
    """What changed since a run started that moves fp32 arithmetic (the library, the device, the thread
    count: PyTorch's CPU kernels split their work by it), in words; "" when nothing did."""
    if before is None or now is None:
        return ""
    fields = (("torch", "PyTorch"), ("device", "device"), ("device_name", "GPU"), ("torch_threads", "threads"))
    changes = [f"{name} {getattr(before, key)} then, {getattr(now, key)} now" for key, name in fields
               if getattr(before, key) != getattr(now, key)]  # fmt: skip
    return "; ".join(changes)


def _calibrate(run_dir: Path, log: Log) -> None:
    from ..tuning import calibrate_run

    c = calibrate_run(run_dir)
    log(
        f"calibrated: temperature {c['temperature']:.3f} in model.json; on the {c['fitted_on']} ECE {c['ece_before']:.3f} -> "
        f"{c['ece_after']:.3f}, Brier {c['brier_before']:.4f} -> {c['brier_after']:.4f}; {c['note']}"
    )


def _search_health(layout: DataLayout, hooks: RunHooks, workers: int, cache_dir: Path) -> Health | None:
    """The duplicate search over the run's images, before training: beside it, its threads would slow the
    training threads that hold every core. None without imagehash. The hashes are kept in cache_dir."""
    try:
        import imagehash  # noqa: F401
    except ImportError:
        hooks.log("duplicates: not searched (pip install 'binclass[health]' to find copies across the splits)")
        return None
    return check_health(layout, workers, cache_dir=cache_dir, progress=hooks.progress("duplicate search"))


def _within_budget(
    given: TrainConfig, ctx: RunContext, train_images: int, pretrained: torch.nn.Module | None = None
) -> TrainConfig:
    """The run's second and last resolution: the user's config with what fits in --time-budget (counted
    from the start of fit): the epochs of a from-scratch run, so that every setting that follows them
    (warm-up, weight average) follows them; the fine-tuning epochs of a pretrained one. Saved over the
    config.json written before the timing."""
    cfg, data, device = ctx.cfg, ctx.data, ctx.device
    budget = parse_duration(cfg.time_budget)
    import_gallery_tools()
    if pretrained is None:
        epoch_seconds = seconds_per_epoch(cfg, device, data.train_x, data.val_x, data.run_dir)
        plan = plan_epochs(budget, time.perf_counter() - ctx.phases.started, epoch_seconds)
    else:
        costs = time_finetune(cfg, device, pretrained, data.train_x, data.val_x)
        elapsed = time.perf_counter() - ctx.phases.started
        plan = plan_finetune(cfg, len(data.train_x), len(data.val_x), costs, budget, elapsed)
    cfg = resolve(given.replace(**plan.settings), ctx.world.size, train_images)
    cfg.save(data.run_dir / CONFIG_FILE)
    ctx.log(plan.describe(cfg.time_budget))
    ctx.phases.mark("timing")
    return cfg


def _fit(given: TrainConfig, run: RunFolder, hooks: RunHooks, world: World) -> Path:
    phases = Phases()
    validate(given, world.size, run.resume)  # every setting checked before the data folder is read
    if world.writer:
        preflight(given.track, Path(given.out))  # a missing package or server: now, not after the run
    layout = scan(given)
    cfg = resolve(given, world.size, len(layout.train))
    if cfg.tensorboard:
        require_tensorboard()  # before any decoding
    intro = describe_choice(cfg, given.model is not None, len(layout.train))
    if run.resume and (moved := arithmetic_moved(given.environment, cfg.environment)):
        intro = f"{intro}\nresume: {moved}: later epochs may differ in their last bits from a run never stopped"
    keep_freed_memory()  # no page faults for the same tensors at every CPU step (see allocator)
    device = resolve_device(cfg.device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    budgeted = cfg.time_budget is not None and not run.resume
    model = features = None
    known_good: tuple[set[int], set[int]] = (set(), set())
    if not cfg.from_scratch:
        from .pretrained import backbone_runtime, feature_cache, pretrained_model, train_views, val_views

        model = pretrained_model(cfg, device)  # first: a missing weights file fails before any decoding
        cfg, runtime = backbone_runtime(cfg, model, device)
        intro = f"{intro}\nbackbone pass: {runtime}"
        features = feature_cache(cfg, model, device)
        if features is not None and not cfg.finetune:  # images whose features are cached stay encoded
            known_good = (
                features.cached(layout.train.paths, train_views(cfg)),
                features.cached(layout.val.paths, val_views(cfg)),
            )
        phases.mark("model")
    data: PreparedData = prepare_data(cfg, device, run, hooks, layout, intro, known_good)
    health = _search_health(data.layout, hooks, default_workers(cfg.workers), cache_root(cfg)) if world.writer else None
    phases.mark("images")
    tracker = open_tracker(cfg.track, data.run_dir, cfg.experiment, run.resume) if cfg.track and world.writer else None
    if tracker is not None:
        hooks.log(f"tracking: {cfg.track} run {tracker.run_id} ({tracker.where})")
        hooks = dataclasses.replace(hooks, on_event=_synced(tracker, hooks.on_event, hooks.log))
    ctx = RunContext(cfg, device, data, hooks, phases, world, run.resume, health)
    try:
        if budgeted:
            ctx = dataclasses.replace(ctx, cfg=_within_budget(given, ctx, len(layout.train), model))
        if model is not None:
            from .pretrained import fit_pretrained

            run_dir = fit_pretrained(ctx, model, features)
        else:
            run_dir = fit_scratch(ctx)
    except BaseException as exc:
        if tracker is not None:  # the tracker run ends too, marked as what happened
            _finish(tracker, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", hooks.log)
        raise
    if tracker is not None:
        _finish(tracker, "FINISHED", hooks.log)
    return run_dir


def _finish(tracker, status: str, log: Log) -> None:
    """The tracker run's end; a tracker that fails here costs a line: the run folder is complete."""
    try:
        tracker.finish(status)
    except Exception as exc:
        log(f"tracking: the tracker did not take the run's end ({type(exc).__name__}: {str(exc)[:120]}); "
            "the run folder is complete")  # fmt: skip


def _synced(tracker, on_event: EventHook | None, log: Log) -> EventHook:
    """on_event, and the tracker's new metrics once a checkpoint has written the epoch's rows. A tracker
    that fails here costs a line, not the run: the rows it missed go at the next checkpoint or the end."""

    def event(name: str) -> None:
        if name == "checkpoint-steps":
            try:
                tracker.sync()
            except Exception as exc:  # a tracking server gone for a moment: the run goes on
                log(f"tracking: not logged this time ({type(exc).__name__}: {str(exc)[:120]}); tried again later")
        if on_event is not None:
            on_event(name)

    return event
