"""Data-parallel optimizer step: time per rank at 1, 2, … ranks, communication per step, and the
sharding's balance on paper at more ranks.

    python -m tools.bench_distributed                  # 1 and 2 gloo ranks on this CPU
    python -m tools.bench_distributed --ranks 1,2 --optimizers muon,specmuon --repeats 10

The model is the FNO of tools/bench_optim.py (neuraloperator, hidden 64, modes 16×16, 4 layers:
576 complex 64×64 per-mode matrices plus its real channel-mixing matrices). Every rank holds the
same gradients (as after DDP's all-reduce) and steps the optimizer built by `build_optimizer` with
the WORLD group, so each rank maps its cost-balanced share and all_gathers the rest
(opspec/optim/sharding.py). Per rank: the median step time, with a barrier before each step and
the slowest rank's time counted; then as many steps again under torch.profiler for the time inside
the sharded maps with their all_gather and inside the all_gather alone (the ranges the library names
"opspec.run_sharded" and "opspec.all_gather"). Communication per step: DDP's gradient all-reduce payload (all
parameters) and the bytes each rank receives in the sharded step's all_gather. On paper: the
largest share of the estimated cost at 8 and 64 ranks from `partition`, and the step time that
gives from the 1-rank step's measured cost per unit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from opspec.optim import build_optimizer
from opspec.optim.build import split_parameters
from opspec.optim.layouts import infer_layout, to_matrices
from opspec.optim.muon import map_cost
from opspec.optim.sharding import Work, communicated_bytes, partition
from opspec.training.runtime import device_name, load_average
from tools.harness import markdown_table


def fno(hidden: int, modes: int, layers: int) -> torch.nn.Module:
    from neuralop.models import FNO

    torch.manual_seed(0)
    return FNO(n_modes=(modes, modes), hidden_channels=hidden, in_channels=1, out_channels=1, n_layers=layers)


def set_grads(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.grad = torch.randn(p.shape, dtype=p.dtype, generator=g)


def muon_works(net: torch.nn.Module, ns_steps: int = 5) -> list[Work]:
    """The works Muon's step hands to `run_sharded` (one per shape and dtype), on the meta device:
    what the partition and the byte count see."""
    buckets: dict[tuple, int] = {}
    for p in split_parameters(net)[0]:
        mats = to_matrices(p.detach(), infer_layout(p))
        key = (*mats.shape[-2:], mats.dtype)
        buckets[key] = buckets.get(key, 0) + mats.shape[0]
    return [Work(inputs=(torch.empty(n, rows, cols, dtype=dtype, device="meta"),), fn=lambda x: (x,),
                 outputs=(((rows, cols), dtype),), cost=map_cost(rows, cols, dtype.is_complex, 0.0, ns_steps))
            for (rows, cols, dtype), n in buckets.items()]


def profiled_seconds(step: Callable[[], object], names: Sequence[str]) -> dict[str, float]:
    """Run `step` once under torch.profiler; the seconds spent in each named range (0 if not entered)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    seconds = dict.fromkeys(names, 0.0)
    for event in prof.events():
        if event.name in seconds:
            seconds[event.name] += event.time_range.elapsed_us() / 1e6
    return seconds


def worker(rank: int, world: int, store: str, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(args.threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    group = dist.group.WORLD if world > 1 else None
    results = {}
    for name in args.optimizers.split(","):
        net = fno(args.hidden, args.modes, args.layers)
        opt = build_optimizer(net, name, lr=0.01, process_group=group)
        times, maps, gathers = [], [], []
        for step in range(args.warmup + args.repeats):
            set_grads(net, step)
            if world > 1:
                dist.barrier()
            start = time.perf_counter()
            opt.step(lambda: torch.tensor(1.0))
            if world > 1:
                dist.barrier()  # the step ends when the slowest rank's share is gathered
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
        for step in range(args.repeats):  # the breakdown, from steps of their own (the profiler slows a step)
            set_grads(net, step)
            if world > 1:
                dist.barrier()
            inside = profiled_seconds(lambda: opt.step(lambda: torch.tensor(1.0)), ("opspec.run_sharded", "opspec.all_gather"))
            maps.append(inside["opspec.run_sharded"])
            gathers.append(inside["opspec.all_gather"])
        results[name] = {"step": times, "map": maps, "gather": gathers}
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    if world > 1:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2", help="comma-separated world sizes to time")
    parser.add_argument("--optimizers", default="muon,specmuon")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--modes", type=int, default=16)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--paper-ranks", default="8,64", help="world sizes for the on-paper balance")
    args = parser.parse_args()
    print(f"device: {device_name(torch.device('cpu'))}; torch {torch.__version__}; {args.threads} thread(s) per rank; "
          f"load average at start {load_average()}")
    net = fno(args.hidden, args.modes, args.layers)
    n_params = sum(p.numel() * p.element_size() for p in net.parameters())
    works = muon_works(net)
    counts, costs = [w.count for w in works], [w.cost for w in works]

    measured: dict[int, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world in [int(w) for w in args.ranks.split(",")]:
            out = str(Path(tmp) / f"w{world}.json")
            started = time.perf_counter()
            if world == 1:
                worker(0, 1, "", args, out)
            else:
                mp.spawn(worker, args=(world, str(Path(tmp) / f"store{world}"), args, out), nprocs=world, join=True)
            measured[world] = json.loads(Path(out).read_text())
            print(f"  {world} rank(s): {time.perf_counter() - started:.0f} s", file=sys.stderr)

    worlds = sorted(measured)
    print(f"\nFNO hidden {args.hidden}, modes {args.modes}×{args.modes}, {args.layers} layers: "
          f"{sum(counts)} matrices in the spectral optimizer (Muon's all_gather bytes shown for SpecMuon too), {n_params / 2**20:.2f} MiB of parameters\n")
    rows = []
    for name in args.optimizers.split(","):
        base = statistics.median(measured[worlds[0]][name]["step"]) if worlds[0] == 1 else None
        for world in worlds:
            times = measured[world][name]["step"]
            med = statistics.median(times)
            gathered = communicated_bytes(works, world)
            ratio = f"{base / med:.2f}x" if base else ""
            maps = statistics.median(measured[world][name]["map"])
            gather = statistics.median(measured[world][name]["gather"])
            rows.append((name, world, f"{med * 1e3:.1f}", f"{min(times) * 1e3:.1f}–{max(times) * 1e3:.1f}", f"{maps * 1e3:.1f}",
                         f"{gather * 1e3:.1f}", ratio, f"{n_params / 2**20:.2f}", f"{gathered / 2**20:.2f}"))
    print(markdown_table(("optimizer", "ranks", "step ms per rank (median)", "range", "of which maps + all_gather ms",
                          "of which all_gather ms", "step(1 rank) / step", "gradient all-reduce payload MiB",
                          "sharded all_gather MiB received per rank"), rows))

    if 1 in measured:
        total = sum(n * c for n, c in zip(counts, costs))
        print("\nOn paper (Muon): the 1-rank step's unsharded part plus the largest share of its maps "
              "(from partition), communication not included:\n")
        rows = []
        one = measured[1].get("muon")
        step1 = statistics.median(one["step"]) if one else None
        map1 = statistics.median(one["map"]) if one else None
        for world in [1, *[int(w) for w in args.paper_ranks.split(",")]]:
            plan = partition(counts, costs, world)
            share = max(sum((stop - start) * costs[i] for i, start, stop in ranges) for ranges in plan) / total
            step = f"{(step1 - map1 + share * map1) * 1e3:.1f}" if step1 else ""
            rows.append((world, f"{share:.4f}", f"{1 / world:.4f}", step, f"{communicated_bytes(works, world) / 2**20:.2f}"))
        print(markdown_table(("ranks", "largest share of the cost", "ideal 1/ranks", "step ms per rank",
                              "all_gather MiB received per rank"), rows))
    print(f"\nload average at end {load_average()}")


if __name__ == "__main__":
    main()
