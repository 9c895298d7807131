"""Data-parallel training on PyTorch's own engine: processes started by torchrun, one model replica each
(DistributedDataParallel), NCCL between GPUs and gloo between CPUs.

The choices, in one place:
- --batch-size is the global batch. Every rank draws the same shuffled order (same seed) and takes its
  contiguous part of each global batch, so the run sees the batches of a one-process run, in the same
  order. Each rank's loss is its samples' summed loss times world / global batch; DDP averages the
  gradients over the ranks, which gives the gradient of the global batch's mean loss, also for a last
  batch that does not split evenly.
- Validation: each rank scores a contiguous slice of the validation set (no padding, no sample twice);
  the logits are gathered to every rank and the metrics counted once over all of them.
- Batch norm: SyncBatchNorm on GPUs (statistics over the global batch). gloo has no SyncBatchNorm
  (PyTorch runs it on GPUs only): on CPUs each rank normalizes with its own part of the batch, and the
  running statistics are rank 0's (DDP broadcasts them before each forward pass; before validation,
  so that every rank scores, and rank 0 saves, the same network).
- Only rank 0 writes the run folder and prints."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..errors import BinclassError

# A rank that waits longer than this in a collective ends with an error instead of waiting forever (a
# peer that died without torchrun noticing, on another machine). Long enough for any epoch's decoding.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writer(self) -> bool:
        """This process writes the run folder and prints (rank 0, or the only process)."""
        return self.rank == 0


SINGLE = World()


def world_from_env() -> World:
    """The process's place in a torchrun launch (its environment variables), or SINGLE."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return SINGLE
        return World(
            rank=int(os.environ["RANK"]),
            size=size,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        )
    except (KeyError, ValueError) as exc:
        raise BinclassError(
            f"WORLD_SIZE is set but the launch is incomplete ({exc}); start the run with torchrun"
        ) from None


def start(world: World, device_setting: str) -> str:
    """Join the process group (NCCL when the run trains on GPUs, gloo otherwise); returns the backend.
    On GPUs each process uses the GPU of its local rank."""
    cuda = device_setting == "cuda" or (device_setting == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(world.local_rank)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return backend


def peer_stopped(exc: BaseException) -> bool:
    """Whether a collective failed because another process of the launch went away."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or any(
        k in text for k in ("gloo", "NCCL", "Connection closed", "Broken pipe")
    )


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The replica that trains: DDP around the model (SyncBatchNorm first on GPUs). The optimizer, the
    weight average and the checkpoints keep using the model itself, which DDP shares."""
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous part of a global batch of indices (the first ranks take one more when it
    does not split evenly; a rank may get none from a last batch smaller than the world)."""
    return torch.tensor_split(batch, world.size)[world.rank]


def bounds(n: int, world: World) -> tuple[int, int]:
    """This rank's slice [start, stop) of n items, as shard() splits them."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (1 if world.rank < extra else 0)


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """The element-wise sum over the ranks (in place; returns t)."""
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_slices(part: torch.Tensor, n: int, world: World) -> torch.Tensor:
    """Every rank's slice (as bounds() cuts n items) joined in rank order, on every rank."""
    if not world.distributed:
        return part
    longest = bounds(n, World(0, world.size))[1]
    padded = torch.zeros(longest, *part.shape[1:], dtype=part.dtype, device=part.device)
    padded[: len(part)] = part
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    sizes = [b - a for a, b in (bounds(n, World(r, world.size)) for r in range(world.size))]
    return torch.cat([p[:k] for p, k in zip(parts, sizes)])


def sync_buffers(module: nn.Module, world: World) -> None:
    """Rank 0's buffers (batch norm running statistics) on every rank."""
    if world.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
