"""The pretrained-backbone recipe: ImageNet features computed once (and cached in memory), then a
linear head trained on them, so head epochs take milliseconds. Flipped images add a second view of
every training image for the head, and --tta averages both views at validation and predict time.
The run folder is the same as for the from-scratch models."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .allocator import release_free_memory
from .config import TrainConfig
from .data.augment import augment_batch
from .data.cache import TensorSource
from .data.scan import DataLayout
from .doctor.diagnosis import EpochDoctor
from .infer import Source, inference_batches, predict_logits, prepare, prepare_model, probabilities
from .loop import Schedule, evaluate, make_optimizer, make_scheduler, train_one_epoch, warmup_cosine
from .modelio import BEST_FILE, load_model, save_meta
from .models import build_model, normalization
from .phases import Phases
from .progress import terminal_progress
from .state import Progress
from .train import (CONFIG_FILE, Checkpoints, default_eval_batch, environment, epoch_row, finish_run, model_meta, record_epoch,
                    resolve_pos_weight, seed_everything)  # fmt: skip


def extract_features(backbone: torch.nn.Module, source: Source, mean, std, batch_size: int, device: torch.device,
                     flip: bool = False) -> torch.Tensor:  # fmt: skip
    """Pooled backbone features (N, F), fp32, in the batches that predict uses."""
    backbone.eval()
    out = []
    with torch.inference_mode():
        for batch in inference_batches(source, batch_size, device):
            x = prepare(batch, mean, std)
            out.append(backbone(x.flip(-1) if flip else x).float())
    return torch.cat(out)


def head_logits(head: torch.nn.Module, views: list[torch.Tensor], batch_size: int) -> np.ndarray:
    """The head on cached features, averaged over views (one view, or image + mirror with --tta):
    the same arithmetic as predict_logits on the whole network."""
    logits = [predict_logits(head, TensorSource(v), (), (), batch_size, v.device, inputs=lambda b: b) for v in views]
    return (sum(logits) / len(logits) if len(logits) > 1 else logits[0]).numpy()


def pretrained_model(cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    seed_everything(cfg.seed)  # the new head's initial weights
    weights = Path(cfg.weights) if cfg.weights else None
    return prepare_model(build_model(cfg.model, cfg.image_size, pretrained=cfg.pretrained, weights=weights), device)


def fit_pretrained(cfg: TrainConfig, device: torch.device, model: torch.nn.Module, run_dir: Path, layout: DataLayout,
                   train_x: Source, val_x: Source, log: Callable[[str], None], phases: Phases) -> Path:  # fmt: skip
    mean, std = normalization(cfg.model)
    cfg.eval_batch_size = cfg.eval_batch_size or default_eval_batch(device)
    cfg.extra = {**environment(device), "precision": "fp32", "recipe": "frozen features + linear head"}
    cfg.save(run_dir / CONFIG_FILE)
    meta = {**model_meta(cfg, layout), "tta": cfg.tta}

    start = time.perf_counter()
    bs = cfg.eval_batch_size
    feats = lambda src, flip=False: extract_features(model.backbone, src, mean, std, bs, device, flip)  # noqa: E731
    train_views = [feats(train_x), feats(train_x, flip=True)] if cfg.augment != "none" else [feats(train_x)]
    val_views = [feats(val_x), feats(val_x, flip=True)] if cfg.tta else [feats(val_x)]
    n_images = sum(len(v) for v in train_views + val_views)
    log(f"features: {n_images} backbone passes ({train_views[0].shape[1]} features each) in {time.perf_counter() - start:.1f}s")

    # Flipped training images are a second, equally labeled view of each image for the head.
    train_f = TensorSource(torch.cat(train_views))
    train_y = torch.tensor(layout.train.labels * len(train_views), dtype=torch.float32, device=device)
    val_y = np.asarray(layout.val.labels)
    head = model.head
    optimizer = make_optimizer(head, cfg)
    schedule = make_scheduler(optimizer, cfg, math.ceil(len(train_f) / cfg.batch_size))
    pos_weight = resolve_pos_weight(cfg.pos_weight, layout.train.labels, device)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    progress = Progress(epoch=0, best_loss=math.inf, since_best=0, best_epoch=None)
    epoch_doctor = EpochDoctor(run_dir)
    checkpoints = Checkpoints(run_dir)
    probs = None
    for epoch in range(1, cfg.epochs + 1):
        release_free_memory()  # see train.fit
        t0 = time.perf_counter()
        stats = train_one_epoch(head, train_f, train_y, inputs=lambda b: b, optimizer=optimizer, schedule=schedule,
                                batch_size=cfg.batch_size, threshold=cfg.threshold, pos_weight=pos_weight,
                                shuffle_gen=shuffle_gen, epoch=epoch,
                                progress=terminal_progress(f"head epoch {epoch}/{cfg.epochs}"))  # fmt: skip
        stats.n = len(layout.train)  # images; each was seen in every view
        schedule.after_epoch()
        logits = head_logits(head, val_views, bs)
        probs = probabilities(torch.from_numpy(logits)).numpy()
        m = metrics.summarize(val_y, logits, probs, cfg.threshold)
        record_epoch(run_dir, epoch_row(epoch, stats, m, time.perf_counter() - t0), stats, model, meta, progress,
                     epoch_doctor, log, cfg.epochs, checkpoints)  # fmt: skip
        checkpoints.write(model, meta, epoch)  # a head epoch takes a fraction of a second: the write is cheap
        if cfg.early_stop is not None and progress.since_best >= cfg.early_stop:
            log(f"early stop: validation loss has not improved for {cfg.early_stop} epochs")
            break
    if cfg.finetune:
        probs = finetune(cfg, device, model, run_dir, layout, train_x, val_x, meta, progress, epoch_doctor, log)
    return finish_run(run_dir, layout, probs, cfg.threshold, epoch_doctor, log, phases)


# The whole network trains at a tenth of the head's learning rate (ImageNet features need only a
# nudge), warming up linearly over the first fine-tuning epoch so the fresh head's large gradients
# do not wreck them, then following a cosine to zero.
FINETUNE_LR_FACTOR = 0.1


def finetune(cfg: TrainConfig, device: torch.device, model: torch.nn.Module, run_dir: Path, layout: DataLayout,
             train_x: Source, val_x: Source, meta: dict, progress: Progress, epoch_doctor: EpochDoctor,
             log: Callable[[str], None]) -> np.ndarray:  # fmt: skip
    """Fine-tune every layer after the head; keep whichever of head-only and fine-tuned has the lower
    validation loss (model.json's default_checkpoint then names best.safetensors). Returns the kept
    model's validation probabilities."""
    mean, std = normalization(cfg.model)
    lr = (cfg.lr or 1e-3) * FINETUNE_LR_FACTOR
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(layout.train) / cfg.batch_size)
    factor = warmup_cosine(total_steps=cfg.finetune * steps, warmup_steps=steps)
    schedule = Schedule(torch.optim.lr_scheduler.LambdaLR(optimizer, factor), per_step=True)
    checkpoints = Checkpoints(run_dir)
    train_y = torch.tensor(layout.train.labels, dtype=torch.float32, device=device)
    val_y = np.asarray(layout.val.labels)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed + 2)
    augment_gen = torch.Generator(device=device).manual_seed(cfg.seed + 3)
    head_best = progress.best_loss
    last = progress.epoch + cfg.finetune
    for epoch in range(progress.epoch + 1, last + 1):
        release_free_memory()
        t0 = time.perf_counter()
        stats = train_one_epoch(
            model, train_x, train_y, inputs=lambda b: augment_batch(prepare(b, mean, std), "flip", augment_gen),
            optimizer=optimizer, schedule=schedule, batch_size=cfg.batch_size, threshold=cfg.threshold,
            pos_weight=resolve_pos_weight(cfg.pos_weight, layout.train.labels, device), shuffle_gen=shuffle_gen,
            epoch=epoch, progress=terminal_progress(f"fine-tune epoch {epoch}/{last}"),
        )  # fmt: skip
        ev = evaluate(model, val_x, val_y, mean=mean, std=std, threshold=cfg.threshold,
                      batch_size=cfg.eval_batch_size, device=device, tta=cfg.tta)  # fmt: skip
        record_epoch(run_dir, epoch_row(epoch, stats, ev.metrics, time.perf_counter() - t0), stats, model, meta,
                     progress, epoch_doctor, log, last, checkpoints)  # fmt: skip
        checkpoints.write(model, meta, epoch)
    kept = "fine-tuned" if progress.best_loss < head_best else "head only"
    meta.update(default_checkpoint="best", kept=kept)
    save_meta(meta, run_dir)
    log(f"kept the {kept} model (lowest validation loss, epoch {progress.best_epoch}): predict uses {BEST_FILE}")
    best, _ = load_model(run_dir, "best")
    best = prepare_model(best, device)
    return evaluate(best, val_x, val_y, mean=mean, std=std, threshold=cfg.threshold, batch_size=cfg.eval_batch_size,
                    device=device, tta=cfg.tta).probs  # fmt: skip
