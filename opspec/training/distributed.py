"""Data-parallel runs under torchrun: which process this is, its device, and the collectives the trainer uses.

`python -m opspec.train` is one process (rank 0 of 1) and every helper here is then a no-op.
Under `torchrun --nproc_per_node=N -m opspec.train`, torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT) starts a process group: NCCL when the run is on CUDA (one GPU per
local rank), gloo on the CPU. A collective that waits longer than `timeout_s` for a rank (one
that died or hangs) fails instead of waiting for ever; torchrun itself ends the job when a
process exits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import torch
import torch.distributed as dist

from opspec.core.errors import OpspecError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def group(self) -> dist.ProcessGroup | None:
        return dist.group.WORLD if self.enabled else None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise OpspecError(f"environment variable {name}={value!r}: expected an integer (set by torchrun)") from None


def ranks_from_env() -> Ranks:
    """This process's place in the job as torchrun's environment says (rank 0 of 1 without torchrun):
    the one place that decides which process is the main one (`Ranks.is_main`)."""
    return Ranks(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def init_ranks(device: torch.device, timeout_s: float) -> tuple[Ranks, torch.device]:
    """Join torchrun's process group if there is one; the device for this rank (cuda:LOCAL_RANK on CUDA)."""
    ranks = ranks_from_env()
    if not ranks.enabled:
        return ranks, device
    if device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise OpspecError(f"LOCAL_RANK={ranks.local_rank}: this machine has {torch.cuda.device_count()} CUDA devices; "
                              "start at most that many processes per node")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    return ranks, device


def close(ranks: Ranks) -> None:
    if ranks.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.enabled:
        dist.barrier()


def broadcast(ranks: Ranks, value: Any) -> Any:
    """Rank 0's `value` on every rank (a picklable object)."""
    if not ranks.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(ranks: Ranks, t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over ranks (in place; returned for chaining)."""
    if ranks.enabled:
        dist.all_reduce(t)
    return t


def all_gather_lists(ranks: Ranks, values: Sequence[Any]) -> list[Any]:
    """Every rank's list, concatenated in rank order."""
    if not ranks.enabled:
        return list(values)
    boxes: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(boxes, list(values))
    return [v for box in boxes for v in box]


def shard_range(n: int, ranks: Ranks) -> range:
    """This rank's contiguous share of n items (the first n mod W ranks take one more)."""
    base, extra = divmod(n, ranks.world_size)
    start = ranks.rank * base + min(ranks.rank, extra)
    return range(start, start + base + (ranks.rank < extra))
