"""What every recipe does around its epochs: seeding, the data and the run folder before, the
predictions, diagnosis and report after; and the one object (RunContext) a recipe is given."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data.check import describe_problems, strict_error
from ..data.decode import default_workers
from ..data.forms import DataSpec, read_data
from ..data.health import Health, Pair, imbalance_advice, majority_share, with_feature_pairs
from ..data.scan import DataLayout, hold_out_calibration
from ..data.sources import (
    MEMORY_CAP,
    MEMORY_SHARE,
    Source,
    available_memory,
    default_cache_dir,
    images_fit,
    make_source,
)
from ..doctor.diagnosis import write_diagnosis
from ..doctor.findings import Finding
from ..engine.distributed import SINGLE, World
from ..errors import BinclassError
from ..metrics import predict_labels
from ..phases import Phases
from ..run.files import CONFIG_FILE, EXCLUDED_FILE, OOD_FILE, PREDICTIONS_FILE
from ..run.folder import open_run_dir, write_predictions
from ..run.hooks import Log, RunHooks
from ..run.lock import RunLock
from ..run.output import RunOutput


class RunFolder:
    """The run folder of one `fit`: opened (created, or found to resume) and locked once, after the data
    scan has found nothing wrong; released when the run ends, however it ends. writer=False: a
    data-parallel rank other than 0, which only reads the folder (a resumed run's state)."""

    def __init__(self, out: Path, overwrite: bool, resume: bool, output: RunOutput, writer: bool = True) -> None:
        self.path, self.overwrite, self.resume, self.output = Path(out), overwrite, resume, output
        self.writer = writer
        self.lock: RunLock | None = None

    def open(self, cfg: TrainConfig) -> Path:
        if self.lock is None and self.writer:
            self.lock = open_run_dir(self.path, self.overwrite, self.resume, self.output.log)
            self.output.attach(self.path)
            if not self.resume:  # first: a run stopped while decoding can be resumed with its settings
                try:
                    cfg.save(self.path / CONFIG_FILE)
                except OSError as exc:
                    raise BinclassError(
                        f"{self.path}: cannot write {CONFIG_FILE} ({exc.strerror}); choose another --out"
                    ) from None
        return self.path

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def drop_bad_files(
    layout: DataLayout, train_good: list[int], val_good: list[int], problems: list, strict: bool, log: Log
) -> DataLayout:
    """Keep only the files that decoded; name the others (or refuse them all with --strict)."""
    ig = layout.ignored
    if ig.hidden or ig.other or ig.outside_links:
        log(
            f"ignored: {ig.hidden} hidden, {ig.other} without an image extension, "
            f"{ig.outside_links} links leading outside"
        )
    if not problems:
        return layout
    if strict:
        raise strict_error(problems)
    log(f"skipped {len(problems)} bad file(s) (--strict makes this an error):")
    for line in describe_problems(problems):
        log(line)

    kept = dataclasses.replace(layout, train=layout.train.subset(train_good), val=layout.val.subset(val_good))
    for name, split in (("train", kept.train), ("validation", kept.val)):
        if len(set(split.labels)) < 2:
            raise BinclassError(f"after skipping bad files, the {name} split lacks a class; fix the files listed above")
    return kept


def scan(cfg: TrainConfig) -> DataLayout:
    """cfg's images, found (not decoded), without those --exclude lists, with --calibration-split's share
    of training held out."""
    layout = read_data(Path(cfg.data_dir), data_spec(cfg), cfg.val_split, cfg.seed, cfg.positive)
    if cfg.exclude:
        layout = exclude_listed(layout, Path(cfg.exclude))
    return hold_out_calibration(layout, cfg.calibration_split, cfg.seed)


def exclude_listed(layout: DataLayout, listing: Path) -> DataLayout:
    """layout without the images listing names (one path per line, as a run or the audit writes them;
    blank lines and # comments skipped). A line that names no image of the data is an error: a typo
    would otherwise train on the image it meant to drop."""
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BinclassError(f"--exclude {listing}: cannot read ({exc}); give a text file of paths") from None
    wanted = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    key = lambda p: os.path.normpath(os.path.abspath(str(p)))  # noqa: E731
    listed = {key(w) for w in wanted}
    known = {key(p) for split in (layout.train, layout.val) for p in split.paths}
    unknown = [w for w in wanted if key(w) not in known]
    if unknown:
        raise BinclassError(
            f"--exclude {listing}: {len(unknown)} line(s) name no image of the data (first: {unknown[0]}); "
            "fix the paths (as the run's files write them)"
        )
    keep = lambda split: [i for i, p in enumerate(split.paths) if key(p) not in listed]  # noqa: E731
    kept = dataclasses.replace(
        layout, train=layout.train.subset(keep(layout.train)), val=layout.val.subset(keep(layout.val))
    )
    for name, split in (("train", kept.train), ("validation", kept.val)):
        if len(set(split.labels)) < 2:
            raise BinclassError(f"--exclude {listing}: leaves the {name} split without one of the classes")
    return dataclasses.replace(
        kept, excluded=[p for split in (layout.train, layout.val) for p in split.paths if key(p) in listed]
    )


def data_spec(cfg: TrainConfig) -> DataSpec:
    return DataSpec(cfg.labels, cfg.image_column, cfg.label_column, cfg.label_from_name, cfg.val)


@dataclass(frozen=True)
class PreparedData:
    """A run's images, found and decoded once: the layout (classes, paths and labels of each split, bad
    files dropped), the decoded training and validation sources in the layout's order, and the open
    run folder they were prepared for."""

    run_dir: Path
    layout: DataLayout
    train_x: Source
    val_x: Source


def prepare_data(
    cfg: TrainConfig,
    device: torch.device,
    run: RunFolder,
    hooks: RunHooks,
    layout: DataLayout,
    intro: str,
    known_good: tuple[set[int], set[int]] = (set(), set()),
) -> PreparedData:
    """Open the run folder (saving the config of a new run), log the data's shape and form (the run's first
    line), then intro (the model's line), decode (or check) every image of layout (cfg's scan) once, keeping
    the duplicate search's hashes in the cache folder; drop and name bad files.
    known_good: (training, validation) indices whose pixels are likely not needed (make_source)."""
    log = hooks.log
    run_dir = run.open(cfg)
    given = "validation folder" if layout.form.startswith("class folders") else "validation images as given"
    held_out = given if layout.val_source == "folder" else f"{cfg.val_split:.0%} held out"
    if layout.calibration.paths:
        held_out += f"; {len(layout.calibration)} training images held out for calibration"
    log(
        f"data: {len(layout.train)} train, {len(layout.val)} validation images ({held_out}); "
        f"classes {layout.classes[0]!r}=0, {layout.classes[1]!r}=1 (positive); read as {layout.form}"
    )
    if layout.excluded:
        (run_dir / EXCLUDED_FILE).write_text("".join(f"{p}\n" for p in layout.excluded))
        log(f"excluded: {len(layout.excluded)} images listed in {cfg.exclude} (the run keeps them in {EXCLUDED_FILE})")
    log(intro)
    start = time.perf_counter()
    workers = default_workers(cfg.workers)
    cache_dir = cache_root(cfg)
    mode = image_store(cfg, len(layout.train) + len(layout.val) - len(known_good[0]) - len(known_good[1]), log)
    train_x, train_good, train_bad, how = make_source(
        layout.train.paths, cfg.image_size, mode, device, workers, cache_dir, known_good[0],
        hooks.progress("decoding training images"), hashes_to=cache_dir,
    )  # fmt: skip
    hooks.event("decoded-train")
    val_x, val_good, val_bad, val_how = make_source(
        layout.val.paths, cfg.image_size, mode, device, workers, cache_dir, known_good[1],
        hooks.progress("decoding validation images"), hashes_to=cache_dir,
    )  # fmt: skip
    hooks.event("decoded")
    log(f"images: train {how}, validation {val_how} in {time.perf_counter() - start:.1f}s ({workers} threads)")
    layout = drop_bad_files(layout, train_good, val_good, train_bad + val_bad, cfg.strict, log)
    return PreparedData(run_dir, layout, train_x, val_x)


def cache_root(cfg: TrainConfig) -> Path:
    """The run's cache folder: --cache-dir, else $BINCLASS_CACHE or the user's cache directory."""
    return Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()


def image_store(cfg: TrainConfig, n_images: int, log: Log) -> str:
    """cfg.cache, or "file" when --cache memory would hold more decoded images than memory affords
    (data.sources.images_fit), said in one line."""
    available = available_memory()
    if cfg.cache != "memory" or images_fit(n_images, cfg.image_size, available):
        return cfg.cache
    gb = n_images * cfg.image_size**2 * 3 / 1e9
    where = cache_root(cfg)
    room = f"{MEMORY_SHARE:.0%} of the {available / 1e9:.1f} GB available" if available is not None else "unknown"
    log(
        f"images: {n_images} decoded images take {gb:.1f} GB, more than memory holds for them "
        f"({MEMORY_CAP / 1e9:.0f} GB at most, {room}): they go to a file in {where / 'decoded'}, read back per batch"
    )
    return "file"


@dataclass(frozen=True)
class RunContext:
    """Everything a recipe is handed: the resolved config, the device, the prepared data, the run's hooks
    and phase clock, the process's place in a torchrun launch, whether it continues a stopped run, and
    the duplicate search's result (None: not searched), which becomes findings once the validation
    predictions exist."""

    cfg: TrainConfig
    device: torch.device
    data: PreparedData
    hooks: RunHooks
    phases: Phases
    world: World = SINGLE
    resume: bool = False
    health: Health | None = None

    @property
    def log(self) -> Log:
        return self.hooks.log


class _Embedding(torch.nn.Module):
    """A model's embed as a module of its own: the features its last layer reads."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def fit_ood(ctx: RunContext, features: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """ood.safetensors: the training images' features and the threshold that accepts ood.ACCEPT of the
    validation images. features: (training, validation) from a frozen backbone, valid for any checkpoint;
    None: computed with the checkpoint predict loads by default (one pass over the images)."""
    from ..engine.infer import extract_features, prepare_model
    from ..models import normalization
    from ..ood import fit_reference, save_reference
    from ..run.weights import load_meta, load_model

    cfg, run_dir = ctx.cfg, ctx.data.run_dir
    checkpoint = "any"
    if features is None:
        checkpoint = load_meta(run_dir).get("default_checkpoint", "last")
        model = prepare_model(load_model(run_dir, checkpoint)[0], ctx.device)
        mean, std = normalization(cfg.model)
        embed = _Embedding(model)
        features = tuple(
            extract_features(embed, source, mean, std, cfg.eval_batch_size, ctx.device)
            for source in (ctx.data.train_x, ctx.data.val_x)
        )
    reference, _ = fit_reference(*features, seed=cfg.seed, checkpoint=checkpoint, accept=cfg.ood_accept)
    save_reference(run_dir, reference)
    ctx.log(
        f"ood: features of {len(reference.features)} training images kept ({OOD_FILE}); an image scoring above "
        f"{reference.threshold:.4f} looks unlike them ({reference.accept:.0%} of the validation images score at or below it)"
    )


def data_findings(
    health: Health, layout: DataLayout, probs: np.ndarray, threshold: float, alike: list[Pair], log: Log
) -> list[Finding]:
    """The data's findings (duplicates across and within the splits, leakage with the accuracy with and
    without the leaked validation images), from the validation probabilities in memory. alike: pairs
    the recipe found alike on its own (a pretrained backbone's features)."""
    from ..doctor.health import health_findings

    h = with_feature_pairs(health, alike)
    predicted = predict_labels(probs, threshold)
    correct = {str(p): bool(y == c) for p, y, c in zip(layout.val.paths, layout.val.labels, predicted)}
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


def finish_run(
    ctx: RunContext,
    probs: np.ndarray,
    findings: list[Finding],
    alike: list[Pair] | None = None,
    features: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Path:
    """val_predictions.csv, the out-of-distribution reference, the data's findings, diagnosis.json and the
    report, then the closing line. probs: the kept model's validation probabilities; findings: the doctor's
    over the run's epochs; alike: pairs of images the recipe found alike on its own (a pretrained backbone's
    features); features: the training and validation images' features where the recipe has them (a frozen
    backbone's), else they are computed with the weights predict loads."""
    run_dir, layout, threshold, hooks = ctx.data.run_dir, ctx.data.layout, ctx.cfg.threshold, ctx.hooks
    ctx.phases.mark("training")
    try:
        write_predictions(run_dir / PREDICTIONS_FILE, layout, probs, threshold)
        hooks.event("predictions")
        fit_ood(ctx, features)
        if layout.calibration.paths:
            from ..tuning import write_calibration_predictions

            write_calibration_predictions(run_dir, layout)
        if ctx.health is not None:
            findings = findings + data_findings(ctx.health, layout, probs, threshold, alike or [], hooks.log)
        from ..explain import write_gallery  # the report's gallery: the worst errors with heatmaps

        write_gallery(run_dir)
        write_diagnosis(run_dir, findings)
        from ..report.html import write_report  # matplotlib import is slow; only needed here

        report = write_report(run_dir)
    except OSError as exc:
        raise BinclassError(
            f"{run_dir}: cannot write the run's report files ({exc.strerror or exc}); every checkpoint is intact: "
            f"free space or fix the folder's permissions, then `binclass train --resume {run_dir}`"
        ) from None
    hooks.event("report")
    ctx.phases.mark("report")
    hooks.log(f"run folder: {run_dir}  report: {report}  ({ctx.phases.summary()})")
    return run_dir
