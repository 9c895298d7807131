"""The pretrained-backbone recipe: ImageNet features computed once (and cached in memory), then a
linear head trained on them, so head epochs take milliseconds. Flipped images add a second view of
every training image for the head, and --tta averages both views at validation and predict time.
Optionally the whole network is then fine-tuned. Both phases run on the engine's epoch driver, and
the run folder is the same as for the from-scratch models."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from ..config import TrainConfig
from ..data.augment import augment_batch
from ..data.health import feature_pairs
from ..data.sources import Source, TensorSource
from ..doctor.findings import Finding
from ..engine.backbone import BackbonePass, choose_runtime
from ..engine.driver import BestModel, EarlyStop, EpochRecorder, run_epochs
from ..engine.infer import predict_logits, prepare, prepare_model, probabilities
from ..engine.loop import EpochStats, Evaluation, evaluate, train_one_epoch
from ..engine.optim import Schedule, make_optimizer, make_scheduler, warmup_cosine
from ..errors import BinclassError
from ..features import FeatureCache
from ..models import build_model, normalization
from ..run.checkpoints import Checkpoints
from ..run.files import BEST_FILE
from ..run.folder import model_meta
from ..run.weights import load_model
from .common import RunContext, cache_root, finish_run, resolve_pos_weight, seed_everything


def head_logits(head: torch.nn.Module, views: list[torch.Tensor], batch_size: int) -> np.ndarray:
    """The head on cached features, averaged over views (one view, or image + mirror with --tta):
    the same arithmetic as predict_logits on the whole network."""
    logits = [predict_logits(head, TensorSource(v), (), (), batch_size, v.device, inputs=lambda b: b) for v in views]
    return (sum(logits) / len(logits) if len(logits) > 1 else logits[0]).numpy()


def pretrained_model(cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    seed_everything(cfg.seed)  # the new head's initial weights
    weights = Path(cfg.weights) if cfg.weights else None
    return prepare_model(build_model(cfg.model, cfg.image_size, pretrained=cfg.pretrained, weights=weights), device)


def backbone_runtime(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> tuple[TrainConfig, str]:
    """cfg with its backbone pass's runtime decided (torch or onnxruntime; auto by a fixed rule, recorded in
    config.json), and the line that says why."""
    mean, std = normalization(cfg.model)
    choice = choose_runtime(cfg.backbone_runtime, model.backbone, mean, std, cfg.image_size, device, cache_root(cfg))
    return cfg.replace(backbone_runtime=choice.runtime), choice.why


def backbone_pass(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> BackbonePass:
    """The frozen backbone's pass with the runtime cfg decided (backbone_runtime)."""
    mean, std = normalization(cfg.model)
    return BackbonePass(cfg.backbone_runtime, model.backbone, mean, std, cfg.image_size, device, cache_root(cfg))


def feature_cache(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> FeatureCache | None:
    """The run's backbone-feature cache (None with --no-feature-cache)."""
    if not cfg.feature_cache:
        return None
    return FeatureCache(cache_root(cfg), model.backbone, cfg.image_size, backbone_pass(cfg, model, device).signature)


def train_views(cfg: TrainConfig) -> tuple[bool, ...]:
    """The training images' views the head trains on (False: the image, True: its mirror image)."""
    return (False, True) if cfg.augment != "none" else (False,)


def val_views(cfg: TrainConfig) -> tuple[bool, ...]:
    return (False, True) if cfg.tta else (False,)


def fit_pretrained(ctx: RunContext, model: torch.nn.Module, cache: FeatureCache | None = None) -> Path:
    """Train model's head on cached features (and fine-tune the whole of it with --finetune N); write the
    run folder."""
    cfg, device, log = ctx.cfg, ctx.device, ctx.log
    run_dir, layout, train_x, val_x = ctx.data.run_dir, ctx.data.layout, ctx.data.train_x, ctx.data.val_x
    mean, std = normalization(cfg.model)

    start = time.perf_counter()
    bs = cfg.eval_batch_size

    if cache is None:
        cache = feature_cache(cfg, model, device)
    backbone = backbone_pass(cfg, model, device)

    def feats(src: Source, paths: list[Path], flip: bool = False) -> torch.Tensor:
        split = "training" if src is train_x else "validation"
        label = f"backbone pass, {split} images" + (" mirrored" if flip else "")
        if cache is None:
            return backbone(src, flip, ctx.hooks.progress(label)).to(device)
        compute = lambda part: backbone.batches(part, flip, ctx.hooks.progress(label))  # noqa: E731
        # Each stored batch is a point where a run may be stopped and started again (the fault tests).
        return cache.features(paths, src, flip, compute, lambda: ctx.hooks.event("features-stored")).to(device)

    train_paths, val_paths = layout.train.paths, layout.val.paths
    train_features = [feats(train_x, train_paths, flip) for flip in train_views(cfg)]
    val_features = [feats(val_x, val_paths, flip) for flip in val_views(cfg)]
    # The same features find copies of validation images in training that a perceptual hash misses (crops).
    mirror = train_features[1].cpu().numpy() if len(train_features) > 1 else None
    alike = feature_pairs(layout, train_features[0].cpu().numpy(), mirror, val_features[0].cpu().numpy())
    n_images = sum(len(v) for v in train_features + val_features)
    how = (
        f"{n_images} backbone passes"
        if cache is None
        else f"{cache.computed} backbone passes, {cache.hits} from the cache ({cache.root})"
    )
    log(f"features: {how} ({train_features[0].shape[1]} features each) in {time.perf_counter() - start:.1f}s")

    # Flipped training images are a second, equally labeled view of each image for the head.
    train_f = TensorSource(torch.cat(train_features))
    train_y = torch.tensor(layout.train.labels * len(train_features), dtype=torch.float32, device=device)
    val_y = np.asarray(layout.val.labels)
    head = model.head
    optimizer = make_optimizer(head, cfg)
    schedule = make_scheduler(optimizer, cfg, math.ceil(len(train_f) / cfg.batch_size))
    pos_weight = resolve_pos_weight(cfg.pos_weight, layout.train.labels, device)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    best, early_stop = BestModel(), EarlyStop(cfg.early_stop)
    recorder = EpochRecorder(run_dir, cfg.epochs, log, events=cfg.tensorboard)
    checkpoints = Checkpoints(run_dir, model_meta(cfg, layout), cfg.save_every, ctx.hooks.on_event)

    def train(epoch: int) -> EpochStats:
        stats = train_one_epoch(
            head,
            train_f,
            train_y,
            inputs=lambda b: b,
            optimizer=optimizer,
            schedule=schedule,
            batch_size=cfg.batch_size,
            threshold=cfg.threshold,
            pos_weight=pos_weight,
            shuffle_gen=shuffle_gen,
            epoch=epoch,
            progress=ctx.hooks.progress(f"head epoch {epoch}/{cfg.epochs}", "steps"),
        )
        return dataclasses.replace(stats, n=len(layout.train))  # images; each was seen in every view

    def validate() -> Evaluation:
        logits = head_logits(head, val_features, bs)
        probs = probabilities(torch.from_numpy(logits)).numpy()
        return Evaluation(metrics.summarize(val_y, logits, probs, cfg.threshold), logits, probs)

    ev = run_epochs(
        range(1, cfg.epochs + 1),
        train=train,
        validate=validate,
        scored=model,
        schedule=schedule,
        recorder=recorder,
        best=best,
        early_stop=early_stop,
        checkpoints=checkpoints,
    )
    probs = ev.probs
    audited = label_audit(ctx, train_features) if cfg.label_audit else []
    frozen = (train_features[0], val_features[0])  # the backbone's features, the same under every checkpoint
    if cfg.finetune:
        probs = finetune(ctx, model, best, recorder, checkpoints)
        frozen = None  # the backbone changed: predict's checkpoint gives the features
    checkpoints.close()
    return finish_run(ctx, probs, recorder.doctor.findings + audited, alike, frozen)


def label_audit(ctx: RunContext, train_features: list[torch.Tensor]) -> list[Finding]:
    """The label audit on the features the head trained on (seconds): label_issues.json and the doctor's
    finding; one line, and no audit, without cleanlab."""
    from .audit import audit_features, record_audit

    try:
        audit = audit_features(train_features, ctx.data.layout, ctx.cfg.seed)
    except BinclassError as exc:
        ctx.log(f"labels: not audited ({exc})")
        return []
    return record_audit(ctx.data.run_dir, audit, ctx.log)


# The whole network trains at a tenth of the head's learning rate (ImageNet features need only a
# nudge), warming up linearly over the first fine-tuning epoch so the fresh head's large gradients
# do not wreck them, then following a cosine to zero.
FINETUNE_LR_FACTOR = 0.1
FROZEN_NORMS = True  # batch norm in inference mode while fine-tuning (see train_one_epoch)


def finetune(
    ctx: RunContext, model: torch.nn.Module, best: BestModel, recorder: EpochRecorder, checkpoints: Checkpoints
) -> np.ndarray:
    """Fine-tune every layer after the head (the epochs after the head's last checkpoint, with cfg's
    optimizer, augmentation, early stop and checkpoint interval); keep whichever of head-only and
    fine-tuned has the lower validation loss (model.json's default_checkpoint then names
    best.safetensors). Returns the kept model's validation probabilities."""
    cfg, device, layout, train_x, val_x = ctx.cfg, ctx.device, ctx.data.layout, ctx.data.train_x, ctx.data.val_x
    done = checkpoints.epoch
    mean, std = normalization(cfg.model)
    optimizer = make_optimizer(model, cfg.replace(lr=cfg.lr * FINETUNE_LR_FACTOR))
    steps = math.ceil(len(layout.train) / cfg.batch_size)
    factor = warmup_cosine(total_steps=cfg.finetune * steps, warmup_steps=steps)
    schedule = Schedule(torch.optim.lr_scheduler.LambdaLR(optimizer, factor), per_step=True)
    train_y = torch.tensor(layout.train.labels, dtype=torch.float32, device=device)
    val_y = np.asarray(layout.val.labels)
    pos_weight = resolve_pos_weight(cfg.pos_weight, layout.train.labels, device)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed + 2)
    augment_gen = torch.Generator(device=device).manual_seed(cfg.seed + 3)
    head_best = best.loss
    last = done + cfg.finetune
    recorder.extend_to(last)
    early_stop = EarlyStop(cfg.early_stop)  # patience counts fine-tuning epochs: a new phase, a new count

    def train(epoch: int) -> EpochStats:
        return train_one_epoch(
            model,
            train_x,
            train_y,
            inputs=lambda b: augment_batch(prepare(b, mean, std), cfg.augment, augment_gen),
            optimizer=optimizer,
            schedule=schedule,
            batch_size=cfg.batch_size,
            threshold=cfg.threshold,
            pos_weight=pos_weight,
            shuffle_gen=shuffle_gen,
            epoch=epoch,
            progress=ctx.hooks.progress(f"fine-tune epoch {epoch}/{last}", "steps"),
            frozen_norms=FROZEN_NORMS,
        )

    def validate() -> Evaluation:
        return evaluate(
            model,
            val_x,
            val_y,
            mean=mean,
            std=std,
            threshold=cfg.threshold,
            batch_size=cfg.eval_batch_size,
            device=device,
            tta=cfg.tta,
        )

    run_epochs(
        range(done + 1, last + 1),
        train=train,
        validate=validate,
        scored=model,
        schedule=schedule,
        recorder=recorder,
        best=best,
        early_stop=early_stop,
        checkpoints=checkpoints,
    )
    kept = "fine-tuned" if best.loss < head_best else "head only"
    checkpoints.choose_default("best", kept)
    ctx.log(f"kept the {kept} model (lowest validation loss, epoch {best.epoch}): predict uses {BEST_FILE}")
    kept_model, _ = load_model(checkpoints.run_dir, "best")
    return evaluate(
        prepare_model(kept_model, device),
        val_x,
        val_y,
        mean=mean,
        std=std,
        threshold=cfg.threshold,
        batch_size=cfg.eval_batch_size,
        device=device,
        tta=cfg.tta,
    ).probs
