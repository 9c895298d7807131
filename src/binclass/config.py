"""TrainConfig: every training setting, its default, unit and help text, in one place.

A TrainConfig as the user gives it leaves recipe settings as None and some choices as "auto";
`binclass.recipes.resolve` turns it, once per run, into a complete frozen one (recipe defaults, every
"auto" decided, the evaluation batch, the Environment it runs in) that the run reads and saves as
config.json. The command line takes its defaults and help texts from here."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BinclassError

MODELS = ("seed", "small", "efficientnet_lite0")  # and "timm:NAME" for any timm model
SCRATCH_MODELS = ("seed", "small")  # trained from random weights; the others start from ImageNet features
OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")
AUGMENTS = ("none", "flip", "crop", "standard")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
CACHES = ("memory", "disk", "none")
BACKBONE_RUNTIMES = ("auto", "torch", "onnxruntime")


@dataclass(frozen=True)
class Environment:
    """Where a run ran: library versions, platform, device. Filled in by resolution, saved with the run
    (config.json's "environment"); what it decided from them lives in TrainConfig's own fields."""

    binclass: str
    torch: str
    numpy: str
    python: str
    platform: str
    device: str  # "cpu", "cuda:0"
    torch_threads: int
    started: str  # ISO 8601, UTC, to the second
    processes: int = 1  # data-parallel ranks of a torchrun launch; batch_size is the global batch
    device_name: str | None = None  # the GPU's name

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    data_dir: str = field(
        metadata={
            "help": "train/ + validation/ (or val/, valid/) with two class folders each, or just two class "
            "folders (optional with --resume)"
        }
    )
    out: str = setting("runs/latest", "run folder to write")
    # Settings left as None take the model's recipe default (recipes/defaults.py), which may depend on the device.
    model: str | None = setting(
        None,
        "efficientnet_lite0 (default: pretrained ImageNet features, shipped offline) | small (the from-scratch "
        "recipe) | seed (the classic question's network) | timm:NAME",
    )
    image_size: int | None = setting(None, "pixels per side (default: the recipe's, or the backbone's own)")
    width: int | None = setting(None, "small model: first-stage channels (default 32: 32-64-128-256)")
    labels: str | None = setting(
        None, "a label table (CSV, TSV or parquet: an image column and a label column) instead of class folders"
    )
    image_column: str | None = setting(None, "--labels: the image column (default: file_name, path, image, id, ...)")
    label_column: str | None = setting(None, "--labels: the label column (default: label, target, class, y)")
    label_from_name: str | None = setting(
        None, "a regular expression whose first group, searched in each file name, is its label (a flat folder)"
    )
    val: str | None = setting(None, "the validation images (any form), instead of a validation folder or --val-split")
    exclude: str | None = setting(
        None, "a file listing images to leave out (one path per line, e.g. label_issues' edited list)"
    )
    val_split: float = setting(0.2, "fraction held out (stratified) when there is no validation folder")
    positive: str | None = setting(None, "class folder that is the positive class (index 1; default: the second)")
    augment: str | None = setting(
        None,
        "none | flip | crop | standard (default: small crop; a pretrained head none, flip with --finetune; seed flip)",
    )
    epochs: int | None = setting(None, "default: small 200 on a GPU, 90 on a CPU; others 15")
    batch_size: int | None = setting(None, "images per optimizer step (default: small 64, others 32)")
    lr: float | None = setting(
        None, "peak learning rate; default: small sgd 0.1; rmsprop 1e-4, adam/adamw 1e-3, sgd 0.05"
    )
    optimizer: str | None = setting(None, "rmsprop | adam | adamw | sgd (default: small sgd, others adamw)")
    weight_decay: float | None = setting(None, "decoupled for adamw, L2 otherwise (default: small 5e-4, others 0)")
    momentum: float = setting(0.9, "sgd only (Nesterov): the usual heavy-ball value")
    scheduler: str | None = setting(None, "none | cosine (per step, after --warmup) | step (per epoch)")
    warmup: float | None = setting(None, "epochs of linear lr warm-up for cosine (default: small 10% of epochs)")
    label_smoothing: float | None = setting(None, "BCE targets eps/2 and 1-eps/2 (default: small 0.1)")
    ema: float | None = setting(
        None, "half-life in epochs of the weight average that is scored and saved; 0 off (default: small 5% of epochs)"
    )
    step_size: int | None = setting(None, "epochs between decays for --scheduler step (default: a third of the run)")
    gamma: float = setting(0.1, "lr factor at each step decay")
    seed: int = setting(0, "seed of the weights, the shuffling, the augmentation and the hold-out split")
    device: str = setting("auto", "auto | cpu | cuda")
    early_stop: int | None = setting(None, "patience in epochs on validation loss (default: off)")
    pos_weight: str = setting("none", "none | auto | a number: weight of positive samples in the loss")
    threshold: float = setting(0.5, "predicted class 1 when probability >= threshold")
    eval_batch_size: int | None = setting(None, "inference batch (default: 32 on a CPU, 500 on a GPU)")
    workers: int = setting(0, "decode threads (0: one per core)")
    precision: str = setting(
        "auto", "auto (bf16 where the hardware supports it; the pretrained recipe: fp32) | fp32 | bf16"
    )
    cache: str = setting("memory", "memory | disk (reused by later runs) | none (decode per batch)")
    cache_dir: str | None = setting(None, "disk cache folder (default: $BINCLASS_CACHE or ~/.cache/binclass)")
    feature_cache: bool = setting(
        True,
        "pretrained models: keep backbone features in the cache folder, so a run on the same images skips the backbone",
    )
    backbone_runtime: str = setting(
        "auto",
        "pretrained models' frozen backbone pass: auto (onnxruntime on a CPU where it measures faster, "
        "measured once per machine) | torch | onnxruntime",
    )
    save_every: float = setting(
        0.0, "seconds of training between checkpoints; 0: every epoch, each a point to resume from"
    )
    strict: bool = setting(False, "stop on any bad image file instead of skipping it")
    compile_optimizer: str = setting("auto", "auto (CPU, 2M+ weights) | on | off: torch.compile the optimizer step")
    cuda_graphs: str = setting(
        "off", "on | off: replay the training step as one CUDA graph (GPU; rmsprop, adam, adamw)"
    )
    deterministic: bool = setting(False, "deterministic kernels only (bit-identical reruns and resumes)")
    calibrate: bool = setting(
        False, "after training, fit temperature scaling on the validation predictions (see binclass calibrate)"
    )
    calibration_split: float = setting(
        0.0,
        "hold out this fraction of the training images (stratified, never trained on) to fit the temperature "
        "and thresholds on, so the validation figures stay honest",
    )
    track: str | None = setting(
        None,
        "mlflow | wandb: log the run to that tracker (settings, metrics, findings, files; needs binclass[mlflow] or [wandb])",
    )
    experiment: str | None = setting(None, "--track: the experiment (MLflow) or project (W&B); default binclass")
    tensorboard: bool = setting(
        False, "also write TensorBoard event files into the run folder (needs binclass[tensorboard])"
    )
    finetune: int = setting(0, "pretrained models: epochs of fine-tuning the whole network after the head")
    ood_accept: float = setting(
        0.95, "the share of validation images the out-of-distribution threshold accepts as like the training images"
    )
    label_audit: bool = setting(
        True, "pretrained models: after the head, rank training labels that look wrong (needs binclass[audit])"
    )
    time_budget: str | None = setting(
        None,
        "e.g. 90s, 10m, 1.5h: from-scratch models take as many epochs as end the run within it (timed on its "
        "first steps; the whole schedule completes), instead of --epochs; pretrained models add up to 5 epochs "
        "of fine-tuning when at least 2 fit",
    )
    tta: bool | None = setting(
        None, "average each image with its mirror image in validation and predict (default: small on)"
    )
    pretrained: bool = setting(True, "timm:NAME models: start from ImageNet weights")
    weights: str | None = setting(None, "timm:NAME models: local backbone weights (safetensors)")
    # Filled in by resolution; two runs with the same settings compare equal wherever they ran.
    environment: Environment | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in (
            "data_dir",
            "out",
            "cache_dir",
            "weights",
            "labels",
            "val",
            "exclude",
        ):  # library callers pass Paths
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, str(value))
        if isinstance(self.environment, dict):  # read back from config.json
            known = {f.name for f in dataclasses.fields(Environment)}
            env = Environment(**{k: v for k, v in self.environment.items() if k in known})
            object.__setattr__(self, "environment", env)

    @property
    def from_scratch(self) -> bool:
        return self.model in SCRATCH_MODELS

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["environment"] = self.environment.to_dict() if self.environment is not None else None
        return d

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BinclassError(
                f"{path}: cannot read the run's config ({exc}); is this a binclass run folder?"
            ) from None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def help_of(name: str) -> str:
    return TrainConfig.__dataclass_fields__[name].metadata["help"]


def default_of(name: str) -> Any:
    return TrainConfig.__dataclass_fields__[name].default


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds (a plain number is seconds)."""
    value = text.strip().lower()
    unit = DURATION_UNITS.get(value[-1:])
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise BinclassError(f"--time-budget {text!r}: give a duration such as 90s, 10m or 1.5h")
    return seconds


def check_settings(cfg: TrainConfig) -> None:
    """Every setting the config holds is one the run can use. Run on the config as given (settings left
    to the recipe are None and pass) and again on the resolved one (every setting filled)."""

    def choice(name: str, options: tuple[str, ...]) -> None:
        value = getattr(cfg, name)
        if value is not None and value not in options:
            raise BinclassError(f"--{name.replace('_', '-')} {value!r} is not one of: {', '.join(options)}")

    def given(name: str) -> bool:
        return getattr(cfg, name) is not None

    choice("optimizer", OPTIMIZERS)
    choice("scheduler", SCHEDULERS)
    choice("augment", AUGMENTS)
    choice("device", DEVICES)
    choice("precision", PRECISIONS)
    choice("cache", CACHES)
    choice("backbone_runtime", BACKBONE_RUNTIMES)
    choice("compile_optimizer", ("auto", "on", "off"))
    choice("cuda_graphs", ("on", "off"))
    if cfg.model is not None and not cfg.model.startswith("timm:") and cfg.model not in MODELS:
        raise BinclassError(f"--model {cfg.model!r} is not one of: {', '.join(MODELS)}, timm:NAME")
    epochs = cfg.epochs
    checks = [
        (not given("image_size") or cfg.image_size >= 16, "--image-size must be at least 16 pixels"),
        (0.0 < cfg.val_split < 1.0, "--val-split must be between 0 and 1 (exclusive)"),
        (0.0 <= cfg.calibration_split < 0.5, "--calibration-split must be from 0 (off) to below 0.5"),
        (
            0.5 <= cfg.ood_accept < 1.0,
            "--ood-accept must be from 0.5 to below 1 (the share of validation images accepted)",
        ),
        (epochs is None or epochs >= 1, "--epochs must be at least 1"),
        (cfg.width is None or cfg.width >= 1, "--width must be at least 1"),
        (
            not given("warmup") or (cfg.warmup >= 0 and (epochs is None or cfg.warmup <= epochs)),
            "--warmup must be between 0 and --epochs",
        ),
        (
            not given("label_smoothing") or 0 <= cfg.label_smoothing < 1,
            "--label-smoothing must be in [0, 1)",
        ),
        (not given("ema") or cfg.ema >= 0, "--ema must be zero (off) or a half-life in epochs"),
        (not given("batch_size") or cfg.batch_size >= 1, "--batch-size must be at least 1"),
        (not given("lr") or cfg.lr > 0, "--lr must be positive"),
        (not given("weight_decay") or cfg.weight_decay >= 0, "--weight-decay must be zero or positive"),
        (0.0 < cfg.threshold < 1.0, "--threshold must be between 0 and 1 (exclusive)"),
        (cfg.early_stop is None or cfg.early_stop >= 1, "--early-stop must be at least 1 epoch"),
        (not given("step_size") or cfg.step_size >= 1, "--step-size must be at least 1 epoch"),
        (0.0 < cfg.gamma <= 1.0, "--gamma must be in (0, 1]"),
        (cfg.eval_batch_size is None or cfg.eval_batch_size >= 1, "--eval-batch-size must be at least 1"),
        (cfg.save_every >= 0, "--save-every must be zero (every epoch) or a number of seconds"),
        (cfg.workers >= 0, "--workers must be zero (all cores) or positive"),
        (cfg.finetune >= 0, "--finetune must be zero (off) or a number of epochs"),
        (cfg.finetune == 0 or not cfg.from_scratch, "--finetune is for pretrained models"),
    ]
    if cfg.time_budget is not None:
        parse_duration(cfg.time_budget)
    for ok, message in checks:
        if not ok:
            raise BinclassError(message)
    if cfg.pos_weight not in ("none", "auto"):
        try:
            value = float(cfg.pos_weight)
        except ValueError:
            raise BinclassError("--pos-weight must be 'none', 'auto' or a positive number") from None
        if not value > 0:
            raise BinclassError("--pos-weight must be 'none', 'auto' or a positive number")
