"""fit(): scan, decode once, train epoch by epoch, write the run folder. The loop itself is in loop.py."""

from __future__ import annotations

import csv
import math
import os
import platform
import random
import signal
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import __version__, history
from .allocator import keep_freed_memory, release_free_memory
from .config import TrainConfig
from .data.augment import augment_batch
from .data.cache import make_source
from .data.check import describe_problems, strict_error
from .data.decode import default_workers
from .data.scan import DataLayout, Split, scan_dataset
from .doctor.diagnosis import EpochDoctor, write_diagnosis
from .ema import WeightAverage
from .errors import BinclassError
from .infer import prepare, prepare_model
from .graphstep import GraphBackend, GraphedStep, graphs_wanted, lr_to_tensor
from .loop import (EpochStats, StepRunner, compile_step_wanted, evaluate, make_optimizer, make_scheduler,
                   step_function, train_one_epoch, training_step)  # fmt: skip
from .modelio import BEST_FILE, MODEL_FILE, resolve_device, resolve_precision, save_meta, save_weights
from .models import build_model, normalization
from .phases import Phases
from .progress import terminal_progress
from .state import STATE_FILE, Progress, load_state, save_state

CONFIG_FILE = "config.json"
PREDICTIONS_FILE = "val_predictions.csv"
RUN_MARKERS = (CONFIG_FILE, history.METRICS_FILE, MODEL_FILE)
RUN_FILES = RUN_MARKERS + (
    history.STEPS_FILE, BEST_FILE, "model.json", PREDICTIONS_FILE, "evaluation.json", "diagnosis.json", STATE_FILE,
)  # fmt: skip


def prepare_run_dir(out: Path, overwrite: bool) -> Path:
    """Create RUN_DIR; refuse to mix two runs in one folder unless --overwrite (which removes only run files)."""
    if out.exists() and not out.is_dir():
        raise BinclassError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any((out / name).exists() for name in RUN_MARKERS):
        if not overwrite:
            raise BinclassError(f"{out}: already holds a run; choose another --out, --resume {out}, or pass --overwrite")
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def default_eval_batch(device: torch.device) -> int:
    """Inference batch. On the 2-core CPU, 32 images were faster than 64 (1000 validation images, fp32:
    seed network 1.6 vs 2.4 s, small network with TTA 3.5 vs 4.0 s) and kept the seed run's peak memory
    150 MB lower; GPUs want more."""
    return 500 if device.type == "cuda" else 32


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def environment(device: torch.device) -> dict:
    env = {
        "binclass": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


def resolve_pos_weight(setting: str, labels: list[int], device: torch.device) -> torch.Tensor | None:
    if setting == "none":
        return None
    if setting == "auto":
        pos = sum(labels)
        neg = len(labels) - pos
        value = neg / pos if pos else 1.0  # weight positives so both classes add the same total loss
    else:
        value = float(setting)
    return torch.tensor(value, dtype=torch.float32, device=device)


def model_meta(cfg: TrainConfig, layout: DataLayout) -> dict:
    mean, std = normalization(cfg.model)
    return {
        "format": "binclass-model/1",
        "architecture": cfg.model,
        "image_size": cfg.image_size,
        "width": cfg.width,
        "tta": bool(cfg.tta),
        "classes": layout.classes,
        "positive_class": layout.classes[1],
        "normalization": {"mean": list(mean), "std": list(std), "scale": "pixels / 255 first"},
        "input": "RGB, EXIF orientation applied, resized to image_size x image_size (bilinear)",
        "threshold": cfg.threshold,
        "eval_batch_size": cfg.eval_batch_size,
        "output": "one logit; probability of positive_class = sigmoid(logit); class 1 if probability >= threshold",
        "weights": {MODEL_FILE: "last completed epoch", BEST_FILE: "epoch with the lowest validation loss",
                    "averaged": bool(cfg.ema)},  # --ema: both files hold the weight average, the model that was scored
        "binclass": __version__,
    }


def write_predictions(path: Path, layout: DataLayout, probs: np.ndarray, threshold: float) -> None:
    classes = layout.classes
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "true_label", "prob", "pred_label"])
        for p, y, prob in zip(layout.val.paths, layout.val.labels, probs.tolist()):
            writer.writerow([str(p), classes[y], repr(float(prob)), classes[int(prob >= threshold)]])


def drop_bad_files(layout: DataLayout, train_good: list[int], val_good: list[int], problems: list,
                   strict: bool, log: Callable[[str], None]) -> DataLayout:  # fmt: skip
    """Keep only the files that decoded; name the others (or refuse them all with --strict)."""
    ig = layout.ignored
    if ig.hidden or ig.other or ig.outside_links:
        log(f"ignored: {ig.hidden} hidden, {ig.other} without an image extension, {ig.outside_links} links leading outside")
    if not problems:
        return layout
    if strict:
        raise strict_error(problems)
    log(f"skipped {len(problems)} bad file(s) (--strict makes this an error):")
    for line in describe_problems(problems):
        log(line)
    pick = lambda split, idx: Split([split.paths[i] for i in idx], [split.labels[i] for i in idx])  # noqa: E731
    kept = DataLayout(layout.classes, pick(layout.train, train_good), pick(layout.val, val_good), layout.val_source, ig)
    for name, split in (("train", kept.train), ("validation", kept.val)):
        if len(set(split.labels)) < 2:
            raise BinclassError(f"after skipping bad files, the {name} split lacks a class; fix the files listed above")
    return kept


def prepare_data(cfg: TrainConfig, device: torch.device, resume: bool, overwrite: bool,
                 log: Callable[[str], None]) -> tuple[Path, DataLayout, object, object]:  # fmt: skip
    """Scan DATA_DIR, make the run folder, decode (or check) every image once; drop and name bad files."""
    layout = scan_dataset(Path(cfg.data_dir), cfg.val_split, cfg.seed, cfg.positive)
    run_dir = Path(cfg.out) if resume else prepare_run_dir(Path(cfg.out), overwrite)
    log(
        f"data: {len(layout.train)} train, {len(layout.val)} validation images "
        f"({'validation folder' if layout.val_source == 'folder' else f'{cfg.val_split:.0%} held out'}); "
        f"classes {layout.classes[0]!r}=0, {layout.classes[1]!r}=1 (positive)"
    )
    start = time.perf_counter()
    workers = default_workers(cfg.workers)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    train_x, train_good, train_bad, how = make_source(layout.train.paths, cfg.image_size, cfg.cache, device, workers, cache_dir)
    val_x, val_good, val_bad, val_how = make_source(layout.val.paths, cfg.image_size, cfg.cache, device, workers, cache_dir)
    log(f"images: train {how}, validation {val_how} in {time.perf_counter() - start:.1f}s ({workers} threads)")
    layout = drop_bad_files(layout, train_good, val_good, train_bad + val_bad, cfg.strict, log)
    return run_dir, layout, train_x, val_x


def kill_hook(progress: Callable[[int, int], None] | None, epoch: int) -> Callable[[int, int], None] | None:
    """Test hook: BINCLASS_KILL_AT=EPOCH:STEP makes the process SIGKILL itself after that step,
    the way an OOM killer or a lost machine ends a run (no cleanup, no flush)."""
    target = os.environ.get("BINCLASS_KILL_AT")
    if not target:
        return progress
    kill_epoch, kill_step = (int(v) for v in target.split(":"))

    def hook(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        if epoch == kill_epoch and done == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def check_finite(stats: EpochStats, paths: list[Path], batch_size: int, run_dir: Path) -> None:
    """Stop on the first non-finite training loss, naming the step and the files of its batch."""
    for s in stats.steps:
        if not math.isfinite(s["loss"]):
            batch = stats.order[(s["step"] - 1) * batch_size : s["step"] * batch_size]
            names = ", ".join(str(paths[i]) for i in batch[:4]) + (f" and {len(batch) - 4} more" if len(batch) > 4 else "")
            raise BinclassError(
                f"non-finite training loss ({s['loss']}) at epoch {s['epoch']}, step {s['step']} (batch: {names}); "
                f"nothing of this epoch was saved, {run_dir / MODEL_FILE} holds the last checkpoint (model.json names its epoch); "
                "lower --lr (or check those files) and start again"
            )


def fit(cfg: TrainConfig, overwrite: bool = False, resume: bool = False, log: Callable[[str], None] = print) -> Path:
    """Train and write the run folder. resume=True continues cfg.out from its last completed epoch
    (cfg is then the run's own config.json)."""
    phases = Phases()
    cfg.validate()
    keep_freed_memory()  # no page faults for the same tensors at every CPU step (see allocator)
    device = resolve_device(cfg.device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if cfg.model not in ("seed", "small") and cfg.cuda_graphs == "on":
        raise BinclassError("--cuda-graphs is for the from-scratch models (seed, small); use --cuda-graphs off")
    graphed = graphs_wanted(cfg.cuda_graphs, device, cfg.optimizer)  # before decoding: a wrong setting fails at once
    if graphed and cfg.compile_optimizer == "on":
        raise BinclassError("--cuda-graphs on replays the eager optimizer step; drop --compile-optimizer on")
    if cfg.model not in ("seed", "small"):
        if resume:
            raise BinclassError("--resume is for the from-scratch models; a pretrained run is short, start it again")
        from .pretrained_recipe import fit_pretrained, pretrained_model

        model = pretrained_model(cfg, device)  # first: a missing weights file fails before any decoding
        phases.mark("model")
        data = prepare_data(cfg, device, resume, overwrite, log)
        phases.mark("images")
        return fit_pretrained(cfg, device, model, *data, log, phases)
    run_dir, layout, train_x, val_x = prepare_data(cfg, device, resume, overwrite, log)
    phases.mark("images")

    seed_everything(cfg.seed)
    model = prepare_model(build_model(cfg.model, cfg.image_size, width=cfg.width), device)
    mean, std = normalization(cfg.model)
    precision = resolve_precision(cfg.precision, device)
    compiled = not graphed and compile_step_wanted(cfg.compile_optimizer, model, device)
    cfg.eval_batch_size = cfg.eval_batch_size or default_eval_batch(device)
    if not resume:
        cfg.extra = {**environment(device), "precision": precision, "compiled_optimizer_step": compiled,
                     "cuda_graphs": graphed}  # fmt: skip
        cfg.save(run_dir / CONFIG_FILE)
    meta = model_meta(cfg, layout)

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
    augment_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    generators = {"shuffle": shuffle_gen, "augment": augment_gen}
    progress = Progress(epoch=0, best_loss=math.inf, since_best=0, best_epoch=None)
    if resume:
        progress = load_state(run_dir, model, optimizer, schedule.scheduler, generators, ema)
        history.truncate(run_dir, progress.epoch)  # rows of an epoch that did not complete
        meta.update(epoch=progress.epoch, best_epoch=progress.best_epoch, best_val_loss=progress.best_loss)
        log(f"resuming after epoch {progress.epoch} of {cfg.epochs}")
    autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    runner = graph_runner(model, optimizer, optimizer_step, cfg.threshold, pos_weight, autocast_dtype) if graphed else None
    epoch_doctor = EpochDoctor(run_dir)
    checkpoints = Checkpoints(run_dir, cfg.save_every)
    ev = None
    phases.mark("setup")
    for epoch in range(progress.epoch + 1, cfg.epochs + 1):
        if cfg.early_stop is not None and progress.since_best >= cfg.early_stop:
            break  # a resumed run that had already stopped early
        release_free_memory()  # what the last epoch freed (steps, validation, checkpoint): kept, it adds up
        t0 = time.perf_counter()
        stats = train_one_epoch(
            model, train_x, train_y, inputs=lambda b: augment_batch(prepare(b, mean, std), cfg.augment, augment_gen),
            optimizer=optimizer, schedule=schedule, optimizer_step=optimizer_step, batch_size=cfg.batch_size,
            threshold=cfg.threshold, pos_weight=pos_weight, shuffle_gen=shuffle_gen, epoch=epoch,
            autocast_dtype=autocast_dtype, label_smoothing=float(cfg.label_smoothing or 0.0), ema=ema,
            progress=kill_hook(terminal_progress(f"epoch {epoch}/{cfg.epochs}"), epoch), runner=runner,
        )  # fmt: skip
        check_finite(stats, layout.train.paths, cfg.batch_size, run_dir)
        ev = evaluate(scored, val_x, val_y, mean=mean, std=std, threshold=cfg.threshold,
                      batch_size=cfg.eval_batch_size, device=device, tta=bool(cfg.tta))  # fmt: skip
        schedule.after_epoch()
        m = ev.metrics
        row = epoch_row(epoch, stats, m, time.perf_counter() - t0)
        record_epoch(run_dir, row, stats, scored, meta, progress, epoch_doctor, log, cfg.epochs, checkpoints)
        stop = cfg.early_stop is not None and progress.since_best >= cfg.early_stop
        if checkpoints.due(force=stop or epoch == cfg.epochs):
            release_free_memory()  # the epoch's kept activations, before the files' buffers stack on top of them
            checkpoints.write(scored, meta, epoch)
            save_state(run_dir, model, optimizer, schedule.scheduler, generators, progress, ema)  # last: marks the epoch complete
        if stop:
            log(f"early stop: validation loss has not improved for {cfg.early_stop} epochs (best: epoch {meta['best_epoch']})")
            break

    if ev is None:  # resumed a run whose epochs were all complete: score the saved model once more
        ev = evaluate(scored, val_x, val_y, mean=mean, std=std, threshold=cfg.threshold,
                      batch_size=cfg.eval_batch_size, device=device, tta=bool(cfg.tta))  # fmt: skip
    release_free_memory()  # as before a checkpoint: the report's figures need fresh memory too
    return finish_run(run_dir, layout, ev.probs, cfg.threshold, epoch_doctor, log, phases)


def graph_runner(model: torch.nn.Module, optimizer: torch.optim.Optimizer, optimizer_step: Callable[[], None],
                 threshold: float, pos_weight: torch.Tensor | None, autocast_dtype: torch.dtype | None,
                 backend: GraphBackend | None = None) -> StepRunner:  # fmt: skip
    """The training step as a CUDA graph (captured at the first step; backend: tests' CPU stand-in).
    Called after any resume, which loads the learning rate as a CPU value: the graph reads it on the device."""
    lr_to_tensor(optimizer, next(model.parameters()).device)

    def body(x: torch.Tensor, target: torch.Tensor, y: torch.Tensor):
        return training_step(model, optimizer, optimizer_step, x, target, y, threshold=threshold,
                             pos_weight=pos_weight, autocast_dtype=autocast_dtype, autocast_cache=False)  # fmt: skip

    return GraphedStep(body, model, optimizer, backend)


def epoch_row(epoch: int, stats: EpochStats, m: dict, seconds: float) -> dict:
    """One metrics.csv row from the training pass and the validation metrics of an epoch."""
    (tn, fp), (fn, tp) = m["confusion"]
    return {
        "epoch": epoch, "train_loss": stats.loss, "train_acc": stats.accuracy, "val_loss": m["loss"],
        "val_acc": m["accuracy"], "val_acc_low": m["accuracy_low"], "val_acc_high": m["accuracy_high"],
        "val_precision": m["precision"], "val_recall": m["recall"], "val_f1": m["f1"],
        "val_balanced_acc": m["balanced_accuracy"], "val_auc": m["auc"], "lr": stats.steps[-1]["lr"],
        "seconds": seconds, "train_n": stats.n, "val_n": m["n"], "val_tn": tn, "val_fp": fp, "val_fn": fn, "val_tp": tp,
        "train_seconds": stats.seconds,
    }  # fmt: skip


def log_epoch(log: Callable[[str], None], row: dict, epochs: int) -> None:
    log(
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
        f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} [{row['val_acc_low']:.3f}, {row['val_acc_high']:.3f}] "
        f"auc {row['val_auc']:.3f} | {row['seconds']:.1f}s"
    )


class Checkpoints:
    """model.safetensors, best.safetensors and model.json, written at most every `every` seconds (and
    whenever forced: the last epoch, an early stop). Between writes the best weights wait in memory.
    Writing the seed network's weights and state took 0.1-0.3 s here; its whole epoch took 0.28 s on an H200."""

    def __init__(self, run_dir: Path, every: float = 0.0) -> None:
        self.run_dir, self.every = run_dir, every
        self.last_write = time.perf_counter()
        self.best: dict[str, torch.Tensor] | None = None

    def track(self, model: torch.nn.Module, meta: dict, progress: Progress, epoch: int, val_loss: float) -> None:
        """Update the best-so-far (lowest finite validation loss) and the early-stop counter."""
        if math.isfinite(val_loss) and val_loss < progress.best_loss:
            progress.best_loss, progress.since_best, progress.best_epoch = val_loss, 0, epoch
            self.best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            meta.update(best_epoch=epoch, best_val_loss=val_loss)
        else:
            progress.since_best += 1
        progress.epoch = epoch

    def due(self, force: bool = False) -> bool:
        return force or self.every <= 0 or time.perf_counter() - self.last_write >= self.every

    def write(self, model: torch.nn.Module, meta: dict, epoch: int) -> None:
        save_weights(model, self.run_dir / MODEL_FILE)
        if self.best is not None:
            save_weights(self.best, self.run_dir / BEST_FILE)
            self.best = None
        meta["epoch"] = epoch
        save_meta(meta, self.run_dir)
        self.last_write = time.perf_counter()


def record_epoch(run_dir: Path, row: dict, stats: EpochStats, model: torch.nn.Module, meta: dict, progress: Progress,
                 epoch_doctor: EpochDoctor, log: Callable[[str], None], epochs: int,
                 checkpoints: Checkpoints) -> None:  # fmt: skip
    """History rows, best-model tracking, the epoch's line and any new doctor finding: the same for every
    recipe. Weights are written by checkpoints.write, when the caller decides it is due."""
    history.append_steps(run_dir, stats.steps)
    history.append_epoch(run_dir, row)
    checkpoints.track(model, meta, progress, row["epoch"], row["val_loss"])
    log_epoch(log, row, epochs)
    for finding in epoch_doctor.after_epoch(row, stats.steps):
        log(f"doctor: {finding.severity} [{finding.id}] {finding.message}")


def finish_run(run_dir: Path, layout: DataLayout, probs: np.ndarray, threshold: float, epoch_doctor: EpochDoctor,
               log: Callable[[str], None], phases: Phases) -> Path:  # fmt: skip
    phases.mark("training")
    write_predictions(run_dir / PREDICTIONS_FILE, layout, probs, threshold)
    write_diagnosis(run_dir, epoch_doctor.findings)
    from .report.html import write_report  # matplotlib import is slow; only needed here

    report = write_report(run_dir)
    phases.mark("report")
    log(f"run folder: {run_dir}  report: {report}  ({phases.summary()})")
    return run_dir
