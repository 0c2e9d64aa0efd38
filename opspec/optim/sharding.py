"""The spectral optimizers' per-matrix work split across the ranks of a process group, then gathered.

After data-parallel training has averaged the gradients, every rank holds the same batches of
matrices to map (polar factors, U Σ^p Vᴴ, SpecMuon's guided step). `run_sharded` cuts the whole
sequence of matrices, over all batches, into one contiguous share per rank at equal shares of the
estimated cost (so a rank with the big matrices gets fewer of them), each rank maps only its
share, and one all_gather of the results as bytes gives every rank every result. The maps act on
each matrix alone, so the gathered results are the single-process ones, and every rank keeps the
full optimizer state: a checkpoint holds the same thing at any number of ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class Work:
    """One batch of matrices and the map to apply: `fn(*inputs[start:stop])` gives outputs for those
    matrices, batch-first; `outputs` gives each output's per-matrix shape and dtype; `cost` is the
    estimated cost of one matrix (any unit, the same for all works of one call)."""

    inputs: tuple[Tensor, ...]
    fn: Callable[..., tuple[Tensor, ...]]
    outputs: tuple[tuple[tuple[int, ...], torch.dtype], ...]
    cost: float

    @property
    def count(self) -> int:
        return self.inputs[0].shape[0]


def partition(counts: Sequence[int], costs: Sequence[float], world: int) -> list[list[tuple[int, int, int]]]:
    """Each rank's ranges (work index, start, stop): the matrices of all works in order, cut where the
    running cost crosses k/world of the total (a matrix goes to the rank its cost's midpoint falls in)."""
    total = sum(n * c for n, c in zip(counts, costs))
    plan: list[list[tuple[int, int, int]]] = [[] for _ in range(world)]
    done = 0.0

    def rank_of(position: float) -> int:
        return min(world - 1, int(position * world / total)) if total > 0 else 0

    for index, (n, c) in enumerate(zip(counts, costs)):
        start = 0
        while start < n:
            rank = rank_of(done + (start + 0.5) * c)
            if rank == world - 1 or c == 0:
                stop = n
            else:  # the first matrix whose midpoint reaches the next rank's share
                stop = min(n, max(start + 1, math.ceil(((rank + 1) * total / world - done) / c - 0.5)))
            plan[rank].append((index, start, stop))
            start = stop
        done += n * c
    return plan


def _to_bytes(t: Tensor) -> Tensor:
    t = torch.view_as_real(t) if t.is_complex() else t
    return t.contiguous().view(-1).view(torch.uint8)


def _from_bytes(b: Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    b = b.clone()  # a fresh, aligned buffer: the slice may start at any byte
    if dtype.is_complex:
        real = torch.empty((), dtype=dtype).real.dtype
        return torch.view_as_complex(b.view(real).view(*shape, 2))
    return b.view(dtype).view(shape)


def _piece_bytes(work: Work, size: int) -> list[int]:
    return [size * torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
            for shape, dtype in work.outputs]


@torch.profiler.record_function("opspec.run_sharded")  # a named range in torch.profiler's trace
def run_sharded(works: Sequence[Work], group: dist.ProcessGroup | None = None) -> list[tuple[Tensor, ...]]:
    """Every work's outputs on every rank; each rank computes only its share (`partition`).

    Without a process group, or with one rank, the works simply run here. torch.profiler sees the
    call as "opspec.run_sharded" and its collective as "opspec.all_gather" (tools/bench_distributed.py).
    """
    if not works:
        return []
    world = dist.get_world_size(group) if group is not None else 1
    if world == 1:
        return [tuple(w.fn(*w.inputs)) for w in works]
    rank = dist.get_rank(group)
    plan = partition([w.count for w in works], [w.cost for w in works], world)
    sizes = [sum(sum(_piece_bytes(works[i], stop - start)) for i, start, stop in ranges) for ranges in plan]
    device = works[0].inputs[0].device
    mine = [torch.empty(0, dtype=torch.uint8, device=device)]
    for i, start, stop in plan[rank]:
        outs = works[i].fn(*(x[start:stop] for x in works[i].inputs))
        mine += [_to_bytes(o) for o in outs]
    buffer = torch.zeros(max(sizes), dtype=torch.uint8, device=device)
    local = torch.cat(mine)
    buffer[: local.numel()] = local
    gathered = [torch.empty_like(buffer) for _ in range(world)]
    with torch.profiler.record_function("opspec.all_gather"):
        dist.all_gather(gathered, buffer, group=group)
    pieces: list[list[list[Tensor]]] = [[[] for _ in w.outputs] for w in works]
    for r, ranges in enumerate(plan):
        offset = 0
        for i, start, stop in ranges:
            for k, ((shape, dtype), nbytes) in enumerate(zip(works[i].outputs, _piece_bytes(works[i], stop - start))):
                pieces[i][k].append(_from_bytes(gathered[r][offset: offset + nbytes], (stop - start, *shape), dtype))
                offset += nbytes
    return [tuple(torch.cat(p) if len(p) > 1 else p[0] for p in outs) for outs in pieces]


def communicated_bytes(works: Sequence[Work], world: int) -> int:
    """Bytes each rank receives in `run_sharded`'s all_gather (world − 1 padded shares)."""
    plan = partition([w.count for w in works], [w.cost for w in works], world)
    sizes = [sum(sum(_piece_bytes(works[i], stop - start)) for i, start, stop in ranges) for ranges in plan]
    return (world - 1) * max(sizes) if world > 1 else 0
