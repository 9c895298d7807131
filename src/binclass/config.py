"""TrainConfig: every training setting with its unit, validated early, saved as config.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BinclassError

MODELS = ("seed", "small", "efficientnet_lite0")  # and "timm:NAME" for any timm model
OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")
AUGMENTS = ("none", "flip", "crop", "standard")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
CACHES = ("memory", "disk", "none")



@dataclass
class TrainConfig:
    data_dir: str
    out: str
    # Settings left as None take the model's recipe default (recipe.py), which may depend on the device.
    model: str = "small"
    image_size: int | None = None  # pixels per side (square resize); None: the recipe's, or the backbone's own size
    width: int | None = None  # small model: channels of its first stage (later stages 2x, 4x, 8x)
    val_split: float = 0.2  # fraction held out (stratified) when DATA_DIR has no validation folder
    positive: str | None = None  # class folder that gets index 1; default: the second in sorted order
    augment: str | None = None
    epochs: int | None = None
    batch_size: int | None = None  # images per optimizer step
    lr: float | None = None  # peak learning rate; None: the recipe's, else DEFAULT_LR of the optimizer
    optimizer: str | None = None
    weight_decay: float | None = None  # decoupled for adamw, L2 otherwise
    momentum: float = 0.9  # sgd only; the usual heavy-ball value
    scheduler: str | None = None
    warmup: float | None = None  # epochs of linear learning-rate warm-up before --scheduler cosine (per step)
    label_smoothing: float | None = None  # BCE targets become eps/2 and 1 - eps/2
    ema: float | None = None  # half-life in epochs of an average of the weights that is evaluated and saved; 0: off
    step_size: int | None = None  # epochs between decays for --scheduler step; None: a third of the run
    gamma: float = 0.1  # lr multiplier at each step decay
    seed: int = 0
    device: str = "auto"
    early_stop: int | None = None  # epochs without a lower validation loss before stopping
    pos_weight: str = "none"  # "none", "auto" (negatives/positives in train) or a number
    threshold: float = 0.5  # predicted class = probability >= threshold
    eval_batch_size: int | None = None  # inference batch; None: 32 on CPU (bounds activation memory), 500 on GPU
    workers: int = 0  # decode threads; 0: one per CPU core
    precision: str = "auto"  # training forward pass: bf16 autocast where the hardware has bf16 units, else fp32
    cache: str = "memory"  # decoded images: memory, disk (reused by the next run), none (decoded per batch)
    cache_dir: str | None = None  # disk cache location; None: $BINCLASS_CACHE or ~/.cache/binclass
    save_every: float = 10.0  # seconds of training between checkpoints (weights + resume state); 0: every epoch
    strict: bool = False  # any bad image file stops the run (default: skip it and name it)
    compile_optimizer: str = "auto"  # auto: torch.compile the optimizer step on CPU for models of 2M+ weights
    cuda_graphs: str = "off"  # on: replay the training step as a captured CUDA graph (GPU only; not yet measured)
    deterministic: bool = False  # deterministic kernels only: bit-identical reruns and resumes, maybe slower
    finetune: int = 0  # pretrained models: epochs of training the whole network after the head (0: head only)
    tta: bool | None = None  # average the logits of each image and its mirror image in validation and predict
    pretrained: bool = True  # timm:NAME models: start from ImageNet weights (--weights FILE offline)
    weights: str | None = None  # timm:NAME models: local safetensors weights of the backbone
    extra: dict[str, Any] = field(default_factory=dict)  # environment facts filled in at run time

    def __post_init__(self) -> None:
        self.data_dir, self.out = str(self.data_dir), str(self.out)  # library callers pass Path objects

    def validate(self) -> "TrainConfig":
        """Fill the recipe defaults (once: a saved config is complete), then check every setting."""
        from .recipe import apply_recipe

        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in options:
                raise BinclassError(f"--{name.replace('_', '-')} {value!r} is not one of: {', '.join(options)}")

        if not self.model.startswith("timm:"):
            choice("model", MODELS)
        apply_recipe(self)
        choice("optimizer", OPTIMIZERS)
        choice("scheduler", SCHEDULERS)
        choice("augment", AUGMENTS)
        choice("device", DEVICES)
        choice("precision", PRECISIONS)
        choice("cache", CACHES)
        choice("compile_optimizer", ("auto", "on", "off"))
        choice("cuda_graphs", ("on", "off"))
        checks = [
            (self.image_size >= 16, "--image-size must be at least 16 pixels"),
            (0.0 < self.val_split < 1.0, "--val-split must be between 0 and 1 (exclusive)"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.width is None or self.width >= 1, "--width must be at least 1"),
            (self.warmup is not None and 0 <= self.warmup <= self.epochs, "--warmup must be between 0 and --epochs"),
            (self.label_smoothing is not None and 0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (self.ema is not None and self.ema >= 0, "--ema must be zero (off) or a half-life in epochs"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr is not None and self.lr > 0, "--lr must be positive"),
            (self.weight_decay >= 0, "--weight-decay must be zero or positive"),
            (0.0 < self.threshold < 1.0, "--threshold must be between 0 and 1 (exclusive)"),
            (self.early_stop is None or self.early_stop >= 1, "--early-stop must be at least 1 epoch"),
            (self.step_size is not None and self.step_size >= 1, "--step-size must be at least 1 epoch"),
            (0.0 < self.gamma <= 1.0, "--gamma must be in (0, 1]"),
            (self.eval_batch_size is None or self.eval_batch_size >= 1, "--eval-batch-size must be at least 1"),
            (self.save_every >= 0, "--save-every must be zero (every epoch) or a number of seconds"),
            (self.workers >= 0, "--workers must be zero (all cores) or positive"),
            (self.finetune >= 0, "--finetune must be zero (off) or a number of epochs"),
            (self.finetune == 0 or self.model not in ("seed", "small"), "--finetune is for pretrained models"),
        ]
        for ok, message in checks:
            if not ok:
                raise BinclassError(message)
        if self.pos_weight not in ("none", "auto"):
            try:
                value = float(self.pos_weight)
            except ValueError:
                raise BinclassError("--pos-weight must be 'none', 'auto' or a positive number") from None
            if not value > 0:
                raise BinclassError("--pos-weight must be 'none', 'auto' or a positive number")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BinclassError(f"{path}: cannot read the run's config ({exc}); is this a binclass run folder?") from None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})
