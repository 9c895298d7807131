"""The training step captured once as a CUDA graph and replayed for every full batch.

A step of the seed network at batch 20 is about 50 small kernels (forward, backward, optimizer). On a
GPU each launch and the Python around it costs more than the kernel itself (docs/benchmarks.md, "Speed
on a GPU": the compute floor is almost all launch overhead). A graph replays the same
kernels with one launch. What a replay cannot do, and how this module keeps it right:
- It reads fixed memory: each batch is copied into static input buffers, and the step's loss, loss
  sum and correct count land in static outputs that the caller copies out before the next replay.
- Shapes are fixed: a last, smaller batch of an epoch runs the same step eagerly.
- Host values are baked in: the learning rate must live in a device tensor (schedules fill it in
  place), and the optimizer must be `capturable` (its step counter on the device).
- Capture needs warm-up steps first, which update the weights: every parameter, buffer and optimizer
  state is saved before them and written back in place after the capture, so the run's first step is
  the first replay, as if the warm-up never happened.
The CUDA calls are isolated in `CudaGraphBackend`; tests run the same class with `RecordedBackend`,
which replays the captured function by calling it, on the CPU."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from ..errors import BinclassError
from .step import StepOut

# Warm-up steps before capture: the first creates the optimizer state, the next run the code path
# that the capture records (PyTorch's whole-network capture example warms up for 3).
WARMUP_STEPS = 3
GRAPH_OPTIMIZERS = ("rmsprop", "adam", "adamw")  # capturable with a tensor learning rate; SGD is not


class Replayable(Protocol):
    def replay(self) -> None: ...


class GraphBackend(Protocol):
    def warmup(self, fn: Callable[[], None], times: int) -> None: ...
    def capture(self, fn: Callable[[], None]) -> Replayable: ...


class CudaGraphBackend:
    def warmup(self, fn: Callable[[], None], times: int) -> None:
        side = torch.cuda.Stream()  # as PyTorch requires: warm-up off the default stream
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(times):
                fn()
        torch.cuda.current_stream().wait_stream(side)

    def capture(self, fn: Callable[[], None]) -> Replayable:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph


class _Recorded:
    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def replay(self) -> None:
        self.fn()


class RecordedBackend:
    """A stand-in for CUDA graphs where there is no GPU: the "graph" is the captured function, run again
    at each replay. It keeps everything else of the graphed step testable on the CPU: static buffers,
    the warm-up that must leave no trace, short last batches, schedules that change the learning rate."""

    def warmup(self, fn: Callable[[], None], times: int) -> None:
        for _ in range(times):
            fn()

    def capture(self, fn: Callable[[], None]) -> Replayable:
        return _Recorded(fn)


def graphs_wanted(setting: str, device: torch.device, optimizer: str) -> bool:
    """True for "on" where a graph can work; "off" is the default until graphs are measured on a GPU. A setting that cannot work is refused."""
    if setting != "on":
        return False
    if device.type != "cuda":
        raise BinclassError(
            f"--cuda-graphs on needs a CUDA device (this run uses {device.type}); use --cuda-graphs off"
        )
    if optimizer not in GRAPH_OPTIMIZERS:
        raise BinclassError(
            f"--cuda-graphs on works with --optimizer {', '.join(GRAPH_OPTIMIZERS)} (their step can run inside a "
            f"graph with a learning rate held in a tensor); {optimizer!r} cannot: use --cuda-graphs off"
        )
    return True


class GraphedStep:
    """Calls `body(x, target, y) -> StepOut` (the eager training step) through a captured graph for
    batches of the captured size, eagerly for others. The StepOut it returns is only valid until the
    next call: copy from it (on the same stream) before calling again."""

    def __init__(
        self,
        body: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], StepOut],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        backend: GraphBackend | None = None,
    ) -> None:
        self.body, self.model, self.optimizer = body, model, optimizer
        self.backend = backend if backend is not None else CudaGraphBackend()
        self.graph: Replayable | None = None
        self.failed: str | None = None  # why the capture failed; every step then runs eagerly
        self.batch = 0
        self.eager_steps = 0  # steps that could not use the graph (a short last batch)

    def __call__(self, x: torch.Tensor, target: torch.Tensor, y: torch.Tensor) -> StepOut:
        if self.graph is None and self.failed is None:
            try:
                self._capture(x, target, y)
            except Exception as exc:  # an operation that cannot be captured; the warm-up is already undone
                self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
                warnings.warn(
                    f"capturing the training step as a CUDA graph failed ({self.failed}); training eagerly",
                    stacklevel=2,
                )
        if self.graph is None or x.shape[0] != self.batch:
            self.eager_steps += 1
            out = self.body(x, target, y)
            self.optimizer.zero_grad(set_to_none=True)  # the eager step's gradients are not needed again
            return out
        for group, lr in zip(self.optimizer.param_groups, self.lrs):
            if group["lr"] is not lr:  # set by assignment, not in place: the graph would go on reading `lr`
                lr.fill_(group["lr"])
                group["lr"] = lr
        self.x.copy_(x)
        self.target.copy_(target)
        self.y.copy_(y)
        self.graph.replay()
        return self.out

    def _run_into_static(self) -> None:
        out = self.body(self.x, self.target, self.y)
        self.out.loss.copy_(out.loss)
        self.out.loss_sum.copy_(out.loss_sum)
        self.out.correct.copy_(out.correct)

    def _capture(self, x: torch.Tensor, target: torch.Tensor, y: torch.Tensor) -> None:
        device = x.device
        self.batch = x.shape[0]
        self.x = x.clone(memory_format=torch.preserve_format)
        self.target, self.y = target.clone(), y.clone()
        self.out = StepOut(
            torch.zeros((), device=device),
            torch.zeros((), dtype=torch.float64, device=device),
            torch.zeros((), dtype=torch.int64, device=device),
        )
        saved = _Snapshot(self.model, self.optimizer)
        try:
            with warnings.catch_warnings():  # torch warns (once) that a capturable step ran uncaptured: the plan
                warnings.filterwarnings("ignore", message=".*capturable=True.*")
                self.backend.warmup(self._run_into_static, WARMUP_STEPS)
        finally:
            saved.restore()
            self.optimizer.zero_grad(set_to_none=True)  # the capture allocates the gradients the graph writes
        self.graph = self.backend.capture(self._run_into_static)
        self.lrs = [group["lr"] for group in self.optimizer.param_groups]  # the tensors the graph reads


class _Snapshot:
    """Weights, buffers and optimizer state as they were, written back in place (the captured graph
    holds their addresses, so the tensors must stay the same objects), and the random number state
    that the warm-up's dropout drew from."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.device = next(model.parameters()).device
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        self.tensors = [*model.parameters(), *model.buffers()]
        self.values = [t.detach().clone() for t in self.tensors]
        self.fresh = not optimizer.state  # no step taken yet: its state is created by the warm-up
        self.state = [
            (t, t.detach().clone()) for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)
        ]

    @torch.no_grad()
    def restore(self) -> None:
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.device)
        for t, v in zip(self.tensors, self.values):
            t.copy_(v)
        if self.fresh:
            # A fresh state is all zeros (step counts, running averages, momentum buffers), and a step
            # from zeros computes what the first step computes from nothing: for SGD-style momentum
            # buf = 0 * momentum + grad, for RMSprop and Adam averages that start at zero.
            for s in self.optimizer.state.values():
                for t in s.values():
                    if isinstance(t, torch.Tensor):
                        t.zero_()
        else:
            for t, v in self.state:
                t.copy_(v)


def lr_to_tensor(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Each group's learning rate as a 0-d tensor on the device, so that a graph reads it (a float would be
    baked into the graph) and schedules update it in place. A resumed run loads it as a CPU tensor."""
    for group in optimizer.param_groups:
        lr = group["lr"]
        if not (isinstance(lr, torch.Tensor) and lr.device == device):
            group["lr"] = torch.tensor(float(lr), device=device)
