"""--time-budget: how many epochs of a from-scratch recipe end the run within a wall-clock budget.

The epochs are chosen before the first one runs, so that the schedule (warm-up, then the decay to its
end value) is sized for them and completes; a run cut off mid-schedule would end at a high learning
rate. The cost of an epoch is timed on a throwaway copy of the network: a few training steps on real
batches of the decoded images, the validation pass on a slice of the validation set, and a checkpoint
written into a temporary folder inside the run folder (same disk). A checkpoint is written beside the
next epoch's training, so it costs its snapshot, plus the wait when the write outlasts an epoch."""

from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TrainConfig
from ..data.augment import augment_batch
from ..data.sources import SliceSource, Source
from ..engine.infer import predict_logits, prepare, prepare_model
from ..engine.optim import make_optimizer
from ..engine.step import training_step
from ..explain import GALLERY_PER_KIND
from ..models import build_model, normalization
from ..run.checkpoints import Checkpoints
from ..run.state import snapshot_state

PROBE_STEPS = (
    4  # timed training steps per group, after WARM_STEPS untimed ones (first-touch allocations, kernel choice)
)
WARM_STEPS = 2
PROBE_VALIDATION = 64  # validation images timed per group; the pass scales linearly with their number
# Each is timed in this many groups and the fastest is kept (as timeit advises): what else the machine
# does at that moment (the writeback of an earlier run's files) is not the run's own speed.
GROUPS = 3
# Seconds every epoch costs besides its steps, validation and checkpoint: the doctor over the history so
# far, the log line, returning freed memory to the system twice (docs/benchmarks.md, "Time budget").
EPOCH_FIXED = 0.05
# The epochs fill at most this share of what is left, the rest kept for the estimate's error (it runs a
# few percent above the real epochs: docs/benchmarks.md, "Time budget").
FILL = 0.98
REPORT_SECONDS = 2.0  # what follows the last epoch: validation predictions, diagnosis, report


@dataclass(frozen=True)
class Plan:
    epochs: int
    epoch_seconds: float  # the estimate: training steps, validation, overhead
    left_seconds: float  # of the budget, when the epochs were chosen

    @property
    def settings(self) -> dict:
        """What the plan sets in the run's config."""
        return {"epochs": self.epochs}

    def describe(self, budget: str) -> str:
        return (
            f"time budget {budget}: {self.left_seconds:.0f} s left after start-up and decoding, about "
            f"{self.epoch_seconds:.2f} s per epoch (timed on a copy of the network): {self.epochs} epochs, "
            "their schedule sized for them (a timing: another run may choose otherwise; config.json keeps them "
            "for --resume)"
        )


def seconds_per_epoch(cfg: TrainConfig, device: torch.device, train_x: Source, val_x: Source, run_dir: Path) -> float:
    """A from-scratch epoch's wall seconds where the run runs, estimated on a copy of cfg's network (cfg
    resolved). Random numbers are drawn from generators of its own: the run's are untouched."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = prepare_model(build_model(cfg.model, cfg.image_size, width=cfg.width), device).train()
        optimizer = make_optimizer(model, cfg)
        step_seconds = _step_seconds(model, optimizer, cfg, train_x, device, WARM_STEPS, GROUPS, PROBE_STEPS)
        validation = _forward_seconds(model, cfg, val_x, device, bool(cfg.tta)) * len(val_x)
        snapshot, write = _checkpoint_seconds(model, optimizer, run_dir)
    steps = math.ceil(len(train_x) / cfg.batch_size)
    work = steps * step_seconds + validation
    return work + snapshot + max(0.0, write - work) + EPOCH_FIXED


def _step_seconds(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    train_x: Source,
    device: torch.device,
    warm: int,
    groups: int,
    per_group: int,
) -> float:
    """Seconds of one training step of model on cfg's batches of train_x (random images and labels from
    generators of its own): `warm` untimed steps, then the fastest of `groups` groups of `per_group`."""
    mean, std = normalization(cfg.model)
    gen = torch.Generator().manual_seed(cfg.seed)
    augment_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    autocast = torch.bfloat16 if cfg.precision == "bf16" else None
    batch = min(cfg.batch_size, len(train_x))

    def step() -> None:
        idx = torch.randint(len(train_x), (batch,), generator=gen)
        x = augment_batch(prepare(train_x.batch(idx), mean, std), cfg.augment, augment_gen)
        y = torch.randint(0, 2, (batch,), generator=gen).float().to(device)
        training_step(
            model, optimizer, optimizer.step, x, y, y, threshold=0.5, pos_weight=None, autocast_dtype=autocast
        )

    for _ in range(warm):
        step()
    _sync(device)
    fastest = math.inf
    for _ in range(groups):
        started = time.perf_counter()
        for _ in range(per_group):
            step()
        _sync(device)
        fastest = min(fastest, (time.perf_counter() - started) / per_group)
    return fastest


def _forward_seconds(model: torch.nn.Module, cfg: TrainConfig, val_x: Source, device: torch.device, tta: bool) -> float:
    """Seconds per validation image of an inference pass, the fastest of GROUPS passes over a slice."""
    mean, std = normalization(cfg.model)
    shown = min(PROBE_VALIDATION, len(val_x))
    fastest = math.inf
    for _ in range(GROUPS):
        started = time.perf_counter()
        predict_logits(model, SliceSource(val_x, 0, shown), mean, std, cfg.eval_batch_size, device, tta=tta)
        fastest = min(fastest, (time.perf_counter() - started) / shown)
    return fastest


def _checkpoint_seconds(model: torch.nn.Module, optimizer: torch.optim.Optimizer, run_dir: Path) -> tuple[float, float]:
    """(snapshot on the training thread, write) seconds of one checkpoint of this network: the second
    of two, the first paying for first-touch memory."""
    with tempfile.TemporaryDirectory(prefix=".budget-", dir=run_dir) as folder:
        checkpoints = Checkpoints(Path(folder), {"budget_probe": True})
        for epoch in (1, 2):
            started = time.perf_counter()
            state = snapshot_state(model, optimizer, None, {}, {"epoch": epoch})
            snapshot = time.perf_counter() - started
            checkpoints.write(model, epoch, None, epoch, 1.0, state)
            started = time.perf_counter()
            checkpoints.wait()
            write = time.perf_counter() - started
    return snapshot, write


def plan_epochs(budget_seconds: float, elapsed: float, epoch_seconds: float) -> Plan:
    """The epochs that fit in what is left of the budget (at least one)."""
    left = budget_seconds - elapsed
    epochs = max(1, math.floor(FILL * (left - REPORT_SECONDS) / epoch_seconds))
    return Plan(epochs, epoch_seconds, left)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the pretrained recipe: the head always, fine-tuning when the budget holds enough of it -------------
# Fine-tuning takes at least this many epochs or none: the first is its warm-up (finetune), so one
# epoch alone never reaches the full rate; more than FINETUNE_MAX is not what the budget buys (see
# docs/benchmarks.md: what fine-tuning adds on top of the head).
FINETUNE_MIN = 2
FINETUNE_MAX = 5
FINETUNE_PROBE_STEPS = 2  # timed full-network steps, after one untimed; each is ~1 s for Lite0 on a CPU


@dataclass(frozen=True)
class FinetunePlan:
    epochs: int  # of fine-tuning, 0: the head only
    head_seconds: float  # backbone passes for the features, estimated
    epoch_seconds: float  # one fine-tuning epoch, estimated
    left_seconds: float

    @property
    def settings(self) -> dict:
        return {"finetune": self.epochs}

    def describe(self, budget: str) -> str:
        costs = (
            f"{self.left_seconds:.0f} s left after start-up and decoding; the head about {self.head_seconds:.0f} s, "
            f"a fine-tuning epoch about {self.epoch_seconds:.0f} s (timed on a copy of the network)"
        )
        if self.epochs:
            return (
                f"time budget {budget}: {costs}: the head, then {self.epochs} epochs of fine-tuning (a timing: "
                "another run may choose otherwise; config.json keeps the choice)"
            )
        return (
            f"time budget {budget}: {costs}: the head only (fine-tuning takes at least {FINETUNE_MIN} epochs; "
            "a larger budget turns it on)"
        )


@dataclass(frozen=True)
class FinetuneCosts:
    """What the pretrained recipe's phases cost where the run runs, timed on a copy of the model."""

    forward_seconds: float  # one backbone pass over one image, without TTA
    step_seconds: float  # one full-network training step on a batch


def time_finetune(
    cfg: TrainConfig, device: torch.device, model: torch.nn.Module, train_x: Source, val_x: Source
) -> FinetuneCosts:
    """Backbone passes on a slice of the validation images and full-network training steps, timed on a
    copy of the model (cfg resolved); the run's random numbers are untouched."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        probe = copy.deepcopy(model)
        forward = _forward_seconds(probe, cfg, val_x, device, tta=False)
        optimizer = make_optimizer(probe.train(), cfg)
        step = _step_seconds(probe, optimizer, cfg, train_x, device, 1, FINETUNE_PROBE_STEPS, 1)
    return FinetuneCosts(forward, step)


def plan_finetune(
    cfg: TrainConfig, n_train: int, n_val: int, costs: FinetuneCosts, budget_seconds: float, elapsed: float
) -> FinetunePlan:
    """How many fine-tuning epochs follow the head within the budget, for these costs (cfg resolved)."""
    forward, step_seconds = costs.forward_seconds, costs.step_seconds
    batch = min(cfg.batch_size, n_train)
    views = (2 if cfg.augment != "none" else 1) * n_train + (2 if cfg.tta else 1) * n_val
    head_seconds = forward * views + cfg.epochs * EPOCH_FIXED
    epoch_seconds = math.ceil(n_train / cfg.batch_size) * step_seconds
    epoch_seconds += forward * (2 if cfg.tta else 1) * n_val + EPOCH_FIXED
    # The report's gallery: a Grad-CAM pass (forward and backward) over up to 32 wrong validation images.
    gallery = step_seconds * min(2 * GALLERY_PER_KIND, n_val) / batch
    left = budget_seconds - elapsed
    room = FILL * (left - REPORT_SECONDS - gallery - head_seconds)
    epochs = min(FINETUNE_MAX, max(0, math.floor(room / epoch_seconds)))
    return FinetunePlan(epochs if epochs >= FINETUNE_MIN else 0, head_seconds, epoch_seconds, left)
