"""The from-scratch recipe (the seed and small networks): decode once, train every weight epoch by
epoch through the engine's driver, and keep a resumable state with every checkpoint."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..data.augment import augment_batch
from ..engine import distributed
from ..engine.driver import BestModel, EarlyStop, EpochRecorder, run_epochs
from ..engine.ema import WeightAverage
from ..engine.graphstep import GraphBackend, GraphedStep, lr_to_tensor
from ..engine.infer import prepare, prepare_model
from ..engine.loop import EpochStats, evaluate, train_one_epoch
from ..engine.optim import make_optimizer, make_scheduler, step_function
from ..engine.step import StepRunner, training_step
from ..errors import BinclassError
from ..models import build_model, normalization
from ..progressbar import Progress, clock_text
from ..run import history
from ..run.checkpoints import Checkpoints
from ..run.files import MODEL_FILE, STATE_FILE
from ..run.folder import model_meta
from ..run.hooks import StepHook
from ..run.state import StateSnapshot, load_state, snapshot_state
from .budget import REPORT_SECONDS
from .common import RunContext, finish_run, resolve_pos_weight, seed_everything


def fit_scratch(ctx: RunContext) -> Path:
    """Train ctx.cfg's network on the decoded images and write the run folder (ctx.resume: continue it
    from its last checkpoint). With several ranks (torchrun), every rank trains its DDP replica and
    only rank 0 writes (engine.distributed)."""
    cfg, device, world, log = ctx.cfg, ctx.device, ctx.world, ctx.log
    run_dir, layout, train_x, val_x = ctx.data.run_dir, ctx.data.layout, ctx.data.train_x, ctx.data.val_x
    seed_everything(cfg.seed)
    model = prepare_model(build_model(cfg.model, cfg.image_size, width=cfg.width), device)
    replica = distributed.wrap(model, device) if world.distributed else model  # what the training steps run
    mean, std = normalization(cfg.model)
    compiled, graphed = cfg.compile_optimizer == "on", cfg.cuda_graphs == "on"

    train_y = torch.tensor(layout.train.labels, dtype=torch.float32, device=device)
    val_y = np.asarray(layout.val.labels)
    optimizer = make_optimizer(model, cfg, tensor_lr=compiled, capturable=graphed)
    steps_per_epoch = math.ceil(len(layout.train) / cfg.batch_size)
    schedule = make_scheduler(optimizer, cfg, steps_per_epoch)
    optimizer_step = step_function(optimizer, compiled)  # after the scheduler, which wraps optimizer.step
    ema = WeightAverage(model, float(cfg.ema) * steps_per_epoch) if cfg.ema else None
    scored = ema.model if ema is not None else model  # validated, checkpointed and saved
    pos_weight = resolve_pos_weight(cfg.pos_weight, layout.train.labels, device)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    # Each rank augments its own images, so each draws its own augmentation (rank 0: a one-process run's).
    augment_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1_000_003 * world.rank)
    generators = {"shuffle": shuffle_gen, "augment": augment_gen}

    best, early_stop = BestModel(), EarlyStop(cfg.early_stop)
    done = 0  # last completed epoch
    checkpoints = Checkpoints(
        run_dir, model_meta(cfg, layout), cfg.save_every, ctx.hooks.on_event, enabled=world.writer
    )
    if ctx.resume and not (run_dir / STATE_FILE).exists():
        dropped = history.truncate(run_dir, 0) if world.writer else []  # rows of an older binclass: no state
        log(
            f"no epoch of this run was completed before it stopped: training from epoch 1 of {cfg.epochs}"
            + (f" (rows of epochs {_epochs(dropped)} had no checkpoint and are trained again)" if dropped else "")
        )
    elif ctx.resume:
        restored = load_state(
            run_dir, model, optimizer, schedule.scheduler, generators, ema.model if ema is not None else None
        )
        if ema is not None and restored.ema_updates is not None:
            ema.resume_at(restored.ema_updates)
        done = int(restored.counters["epoch"])
        if world.rank > 0:  # the state holds rank 0's augmentation stream: the others take one of their own
            augment_gen.manual_seed(cfg.seed + 1 + 1_000_003 * world.rank + done)
        best.load_state_dict(restored.counters)
        early_stop.load_state_dict(restored.counters)
        dropped = restore_history(run_dir, done, restored.rows) if world.writer else []
        checkpoints.resumed(done, best.epoch, best.loss, restored.weights_file)
        log(
            f"resuming after epoch {done} of {cfg.epochs}"
            + (f" (rows of epochs {_epochs(dropped)} had no checkpoint and are trained again)" if dropped else "")
        )
    autocast_dtype = torch.bfloat16 if cfg.precision == "bf16" else None
    runner = None
    if graphed:
        runner = graph_runner(model, optimizer, optimizer_step, cfg.threshold, pos_weight, autocast_dtype)
    recorder = EpochRecorder(run_dir, cfg.epochs, log, diagnose=world.writer, events=cfg.tensorboard)

    first_epoch = done + 1

    def train(epoch: int) -> EpochStats:
        bar = ctx.hooks.progress(f"epoch {epoch}/{cfg.epochs}", "steps") if world.writer else None
        if epoch == first_epoch and world.writer:
            validation_images = len(val_x) * (2 if cfg.tta else 1)
            # after the last epoch, the out-of-distribution reference: one pass over the training and the
            # validation images (finish_run, fit_ood)
            closing_images = len(train_x) + len(val_x)
            bar = both(
                bar, expected_time(ctx, cfg.epochs - epoch + 1, validation_images, closing_images, cfg.batch_size)
            )
        progress = step_progress(bar, epoch, ctx.hooks.on_step)
        stats = train_one_epoch(
            replica,
            train_x,
            train_y,
            inputs=lambda b: augment_batch(prepare(b, mean, std), cfg.augment, augment_gen),
            optimizer=optimizer,
            schedule=schedule,
            optimizer_step=optimizer_step,
            batch_size=cfg.batch_size,
            threshold=cfg.threshold,
            pos_weight=pos_weight,
            shuffle_gen=shuffle_gen,
            epoch=epoch,
            autocast_dtype=autocast_dtype,
            label_smoothing=float(cfg.label_smoothing or 0.0),
            ema=ema,
            progress=progress,
            runner=runner,
            world=world,
        )
        check_finite(stats, layout.train.paths, cfg.batch_size, run_dir)
        return stats

    def validate():
        distributed.sync_buffers(scored, world)  # rank 0's batch norm statistics: the network it saves
        return evaluate(
            scored,
            val_x,
            val_y,
            mean=mean,
            std=std,
            threshold=cfg.threshold,
            batch_size=cfg.eval_batch_size,
            device=device,
            tta=bool(cfg.tta),
            world=world,
        )

    def state(epoch: int) -> StateSnapshot:
        counters = {"epoch": epoch, **best.state_dict(), **early_stop.state_dict()}
        ema_model, ema_updates = (ema.model, ema.updates) if ema is not None else (None, None)
        return snapshot_state(model, optimizer, schedule.scheduler, generators, counters, ema_model, ema_updates)

    ctx.phases.mark("setup")
    ev = run_epochs(
        range(done + 1, cfg.epochs + 1),
        train=train,
        validate=validate,
        scored=scored,
        schedule=schedule,
        recorder=recorder,
        best=best,
        early_stop=early_stop,
        checkpoints=checkpoints,
        state=state,
    )
    checkpoints.close()
    if ev is None:  # resumed a run whose epochs were all complete: score the saved model once more
        ev = validate()
    if not world.writer:
        return run_dir
    return finish_run(ctx, ev.probs, recorder.doctor.findings)


def restore_history(run_dir: Path, done: int, rows: dict | None) -> list[int]:
    """The history files as the checkpoint of epoch `done` left them: its own rows (kept in the state)
    rewritten after the rows of the epochs before, and nothing after it. Returns the epochs dropped
    after `done` (none, unless an older binclass wrote rows between checkpoints)."""
    if not rows or not rows.get("metrics"):
        return history.truncate(run_dir, done)  # a state written by an older binclass
    first = min(int(r["epoch"]) for r in rows["metrics"])
    dropped = history.truncate(run_dir, first - 1)
    history.append_steps(run_dir, rows["steps"])
    history.append_epochs(run_dir, rows["metrics"])
    return [e for e in dropped if e > done]


def _epochs(numbers: list[int]) -> str:
    return f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])


# The run's expected time is said once the first epoch's steps 3 to 12 are timed (the first two pay for
# first-touch allocations and kernel choices). A validation image counts as a third of a training image
# (a forward pass, no backward), twice with the mirror-image average.
EXPECT_STEPS = (2, 12)
FORWARD_SHARE = 1 / 3
# Past this many minutes, the expected-time line suggests a --time-budget of as many.
LONG_RUN_MINUTES = 15


def expected_time(
    ctx: RunContext, epochs_left: int, validation_images: int, closing_images: int, batch_size: int
) -> Progress:
    """A step callback for the first epoch a process trains: one line with the run's expected time, and the
    advice of --time-budget when it passes LONG_RUN_MINUTES."""
    seen: dict[int, float] = {}

    def see(done: int, total: int) -> None:
        first, last = min(EXPECT_STEPS[0], total - 1), min(EXPECT_STEPS[1], total)
        if done == first:
            seen[first] = time.perf_counter()
        if done != last or first not in seen and first > 0:
            return
        now = time.perf_counter()
        per_step = (now - seen.get(first, ctx.phases.last)) / max(1, last - first)
        steps_left = epochs_left * total - last
        forward_images = epochs_left * validation_images + closing_images
        forward = forward_images * FORWARD_SHARE * per_step / batch_size
        total_seconds = now - ctx.phases.started + steps_left * per_step + forward + REPORT_SECONDS
        line = (
            f"expected: about {clock_text(total_seconds)} in all ({per_step:.2f} s per step of {total} per epoch, "
            f"{epochs_left} epochs to go)"
        )
        if total_seconds > LONG_RUN_MINUTES * 60:
            minutes = f"{LONG_RUN_MINUTES:g}"
            line += f"; --time-budget {minutes}m would fit the whole schedule into {minutes} minutes with fewer epochs"
        ctx.log(line)

    return see


def both(first: Progress | None, second: Progress) -> Progress:
    if first is None:
        return second
    return lambda done, total: (first(done, total), second(done, total))


def step_progress(bar: Progress | None, epoch: int, on_step: StepHook | None) -> Progress | None:
    """An epoch's progress line (None: none) and the caller's step hook, as one progress callback."""
    if on_step is None:
        return bar

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar(done, total)
        on_step(epoch, done, total)

    return progress


def graph_runner(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    optimizer_step: Callable[[], None],
    threshold: float,
    pos_weight: torch.Tensor | None,
    autocast_dtype: torch.dtype | None,
    backend: GraphBackend | None = None,
) -> StepRunner:
    """The training step as a CUDA graph (captured at the first step; backend: tests' CPU stand-in).
    Called after any resume, which loads the learning rate as a CPU value: the graph reads it on the device."""
    lr_to_tensor(optimizer, next(model.parameters()).device)

    def body(x: torch.Tensor, target: torch.Tensor, y: torch.Tensor):
        return training_step(
            model,
            optimizer,
            optimizer_step,
            x,
            target,
            y,
            threshold=threshold,
            pos_weight=pos_weight,
            autocast_dtype=autocast_dtype,
            autocast_cache=False,
        )

    return GraphedStep(body, model, optimizer, backend)


def check_finite(stats: EpochStats, paths: list[Path], batch_size: int, run_dir: Path) -> None:
    """Stop on the first non-finite training loss, naming the step and the files of its batch."""
    for s in stats.steps:
        if not math.isfinite(s["loss"]):
            batch = stats.order[(s["step"] - 1) * batch_size : s["step"] * batch_size]
            more = f" and {len(batch) - 4} more" if len(batch) > 4 else ""
            names = ", ".join(str(paths[i]) for i in batch[:4]) + more
            raise BinclassError(
                f"non-finite training loss ({s['loss']}) at epoch {s['epoch']}, step {s['step']} (batch: {names}); "
                f"nothing of this epoch was saved, {run_dir / MODEL_FILE} holds the last checkpoint (model.json "
                "names its epoch); lower --lr (or check those files) and start again"
            )
