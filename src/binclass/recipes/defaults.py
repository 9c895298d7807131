"""Default settings per model: what `binclass train DATA_DIR --model M` runs when no other flag is given.

Every setting the user leaves unset (None in TrainConfig) is filled here, once (binclass.recipes.resolve);
the filled config is what config.json records. The from-scratch "small" recipe borrows from fast
small-data training records (ResNet-9 style net, one-cycle-like schedule, label smoothing, weight
averaging, flip TTA); docs/recipes.md's ablation table says what each piece is worth on cats vs dogs."""

from __future__ import annotations

from typing import Any

from ..config import TrainConfig
from ..models import default_image_size

# `binclass train DATA` with no --model: the packaged ImageNet backbone, its features frozen and a linear
# head trained on them: more accurate than any from-scratch recipe in a fraction of the time, and it
# needs no download (docs/benchmarks.md, "Headline figures").
DEFAULT_MODEL = "efficientnet_lite0"

# A pretrained model's head trains on each training image's features once: the mirror images' features as a
# second view (--augment flip) cost 2000 of a first run's 5000 backbone passes on the shared set, about a
# fifth of its time, and moved accuracy by less than the 1000 images' interval on two tasks (cats vs dogs
# 0.991 without, 0.988 with; upright vs upside down 0.972 without, 0.976 with; docs/benchmarks.md, "Do the
# mirror-image passes pay?"). Fine-tuning keeps the generic flip: there it augments pixels, every epoch.
HEAD_AUGMENT = "none"

# Learning rates that train each optimizer stably on small from-scratch CNNs; rmsprop at 1e-3 is
# known to collapse the seed network to a constant output, so its default is ten times lower.
DEFAULT_LR = {"rmsprop": 1e-4, "adam": 1e-3, "adamw": 1e-3, "sgd": 0.05}

# The defaults binclass had before recipes: seed and pretrained models keep them.
GENERIC: dict[str, Any] = {
    "augment": "flip",
    "epochs": 15,
    "batch_size": 32,
    "optimizer": "adamw",
    "weight_decay": 0.0,
    "scheduler": "none",
    "warmup": 0.0,
    "label_smoothing": 0.0,
    "ema": 0.0,
    "tta": False,
}

SMALL: dict[str, Any] = {
    "augment": "crop",  # random zoom/shift + flip per image: +1.7 points over flip alone (docs/recipes.md ablation)
    "batch_size": 64,  # images per step: enough for stable batch-norm statistics, many steps per epoch
    "optimizer": "sgd",  # Nesterov momentum 0.9
    "lr": 0.1,  # peak, per step; batch norm makes this stable after the warm-up
    "weight_decay": 5e-4,  # L2 per step; the usual value for SGD-trained residual nets
    "scheduler": "cosine",  # to zero at the last step: the last epochs settle into a minimum
    # Targets 0.05/0.95: no reward for ever-larger logits on memorized images; with the weight average
    # (EMA_FRACTION) it lifted the CPU default beyond seed noise (docs/recipes.md, the ablation).
    "label_smoothing": 0.1,
    "tta": True,  # mirror-image logits averaged in: +0.7 points (ablation) for one more forward pass
    "width": 32,  # channels 32-64-128-256
}
# Sized by device: a GPU affords 200 epochs at 128 px; a 2-core CPU must finish within 20 minutes, and
# of the image sizes that fit there 80 px scored best (docs/recipes.md).
SMALL_BY_DEVICE: dict[str, dict[str, Any]] = {
    "cuda": {"image_size": 128, "epochs": 200},
    "cpu": {"image_size": 80, "epochs": 90},
}
WARMUP_FRACTION = 0.1  # of the steps: lr rises linearly from ~0, so early large gradients do no harm
# Sized by the number of training images. The recipe was tuned at 2000 images: batch 64, 31 steps per
# epoch. On 250 images the same batch leaves 4 steps per epoch (360 in a run): the warm-up is 36 steps,
# lr 0.1 meets an unsettled batch norm, and the run diverged (0.631, doctor `diverging`). Smaller sets get
# a smaller batch, about IMAGES_PER_STEP images per step of an epoch, a power of two between the bounds, and the
# peak rate scales with it (the linear scaling rule: lr / batch kept at 0.1 / 64), so every size keeps
# 16-32 steps per epoch and a warm-up of at least 140 steps. At 2000 images nothing changes.
IMAGES_PER_STEP = 25  # n / 25 = 80 at 2000 images: batch 64
BATCH_BOUNDS = (16, 64)  # below 16 images batch-norm statistics get noisy; above 64, CPU steps get slow
LR_PER_IMAGE = 0.1 / 64
# Half-life of the weight average as a fraction of the epochs; kept with label smoothing (see there).
EMA_FRACTION = 0.05


def scaled_batch(train_images: int) -> int:
    """The small recipe's batch for a training set of this many images (see IMAGES_PER_STEP)."""
    low, high = BATCH_BOUNDS
    wanted = max(1, train_images // IMAGES_PER_STEP)
    return min(high, max(low, 1 << (wanted.bit_length() - 1)))


def recipe_for(
    model: str, device_type: str, epochs: int | None = None, train_images: int | None = None
) -> dict[str, Any]:
    """The model's defaults. Epoch-based ones (warm-up, EMA half-life) follow `epochs` when the user
    chose it, so `--epochs 20` gets a 2-epoch warm-up; the small recipe's batch and peak rate follow
    train_images when it is known (None: the 2000-image recipe)."""
    if model != "small":
        return dict(GENERIC)
    values = {**GENERIC, **SMALL, **SMALL_BY_DEVICE["cuda" if device_type == "cuda" else "cpu"]}
    if train_images is not None:
        values["batch_size"] = scaled_batch(train_images)
        values["lr"] = round(LR_PER_IMAGE * values["batch_size"], 6)
    n = epochs if epochs is not None else values["epochs"]
    values["warmup"] = round(WARMUP_FRACTION * n, 2)
    values["ema"] = round(EMA_FRACTION * n, 2)
    return values


def recipe_defaults(cfg: TrainConfig, device_type: str, train_images: int | None = None) -> dict[str, Any]:
    """The settings cfg leaves unset (None), filled from its model's recipe: a dict for cfg.replace."""
    values = recipe_for(cfg.model, device_type, cfg.epochs, train_images)
    if cfg.batch_size is not None and train_images is not None and cfg.model == "small" and cfg.lr is None:
        # The user's batch, the recipe's rate per image.
        values["lr"] = round(LR_PER_IMAGE * cfg.batch_size, 6)
    filled: dict[str, Any] = {}
    epochs = cfg.epochs if cfg.epochs is not None else values["epochs"]
    if cfg.epochs is None:
        filled["epochs"] = epochs
    for name in (
        "augment",
        "batch_size",
        "optimizer",
        "weight_decay",
        "scheduler",
        "warmup",
        "label_smoothing",
        "ema",
        "tta",
        "width",
    ):
        if getattr(cfg, name) is None and name in values:
            filled[name] = values[name]
    optimizer = filled.get("optimizer", cfg.optimizer)
    if cfg.lr is None:
        # The recipe's rate belongs to the recipe's optimizer; another optimizer gets its own default.
        same = optimizer == values["optimizer"] and "lr" in values
        filled["lr"] = values["lr"] if same else DEFAULT_LR.get(str(optimizer), 1e-3)
    if cfg.image_size is None:
        filled["image_size"] = values["image_size"] if "image_size" in values else default_image_size(cfg.model)
    if cfg.step_size is None:
        filled["step_size"] = max(1, epochs // 3)
    if not cfg.from_scratch and cfg.augment is None and not cfg.finetune:
        filled["augment"] = HEAD_AUGMENT
    return filled


def describe_choice(cfg: TrainConfig, chosen: bool, train_images: int | None = None) -> str:
    """The run's first line: which model and recipe, why, and how to choose another (cfg: resolved).
    chosen: the user named the model."""
    if cfg.from_scratch:
        how = f"from scratch: {cfg.optimizer} lr {cfg.lr:g}, {cfg.epochs} epochs at {cfg.image_size} px, batch {cfg.batch_size}"
        if cfg.model == "small" and train_images is not None:
            how += f" (batch and rate sized for {train_images} training images)"
    else:
        how = f"pretrained ImageNet features with a linear head on top, {cfg.image_size} px"
        if cfg.finetune:
            how += f", then {cfg.finetune} epochs of fine-tuning"
    if chosen:
        return f"model: {cfg.model} ({how}), as chosen"
    return (
        f"model: {cfg.model} ({how}): the default, the most accurate model a CPU makes in about a minute, "
        "offline; --model small trains a network from scratch, --model seed the classic question's network"
    )


def default_eval_batch(device_type: str) -> int:
    """Inference batch: on a CPU 32 images were faster than 64 and use less memory (docs/benchmarks.md,
    "Measurements behind the code"); GPUs want more."""
    return 500 if device_type == "cuda" else 32
