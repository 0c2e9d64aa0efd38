"""Where a Muon training step spends its CPU time, per comparison setting (issue 23), by torch.profiler.

    python -m tools.profile_step --settings darcy_fno,darcy_tfno,navier_stokes_fno,burgers_fno,darcy_deeponet

For each setting (`configs/<setting>.yaml` with optimizer.name=muon) the model is built as a run
builds it (unit normalizers; glibc malloc set as a run sets it, `train.keep_freed_memory`) and trained on random batches of the config's shape (batch size,
training resolution: no data file is read or generated). After warm-up steps, `--steps` steps run
under torch.profiler with named ranges around the forward pass, the backward pass and the optimizer
step. Each top-level ATen op inside the optimizer step is charged to one category by the piece of the
step it runs in and its name. The pieces come from one more step run under torch.profiler's Python
tracer (`with_stack=True`): there each op sits under the events of the Python frames it runs in, and
the outermost frame that is a piece decides (step.py's adamw_group_step, to_matrices, from_matrices,
run_sharded, decoupled_update; the optimizer's `direction` and directions.py). Nothing in the library is
wrapped or replaced; the profiled steps run the same ops in the same order without the tracer, so their
times carry none of its cost.

- Newton–Schulz matmuls: bmm / baddbmm / matmul inside the map (sharding.run_sharded);
- map, other: the map's other ops (Frobenius norms, scaling, dtype casts, chunk cat);
- layout copies: to_matrices / from_matrices, and copies (contiguous, clone, copy_) inside the map;
- bucketing: torch.cat / split of the buckets in the step body;
- direction: the momentum (or Adam) base;  update: θ ← (1 − lr·λ)θ − γU;  AdamW part: use_spectral=False;
- Python and dispatch: the step's time outside every ATen op (its loops, dict look-ups).

Shares are of the whole training step (forward + backward + optimizer step) and of the optimizer
step; on a loaded machine only the shares and the op counts mean anything. The last table row per
setting is torch.optim.AdamW's step on the same model, for reference.
"""

from __future__ import annotations

import argparse
import inspect
import re
import time
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.autograd.profiler_util import FunctionEvent

import opspec.optim.directions as directions_module
import opspec.optim.step as step_module
from opspec.training.assemble import build_net, optimizer_from_config, problem_meta, seed_everything
from opspec.training.config import load_config
from opspec.training.metrics import relative_l2
from opspec.training.runtime import keep_freed_memory
from tools.harness import ROOT, markdown_table

SETTINGS = "darcy_fno,darcy_tfno,navier_stokes_fno,burgers_fno,darcy_deeponet"
MAP = "map"  # the piece whose ops are split into matmuls, copies and the rest
STEP_PIECES = {  # a function step.py calls, by its name there → its piece (a category, or MAP)
    "adamw_group_step": "AdamW part",
    "to_matrices": "layout copies",
    "from_matrices": "layout copies",
    "run_sharded": MAP,
    "decoupled_update": "update",
}
DIRECTION = "direction"
PHASES = ("phase.zero_grad", "phase.forward", "phase.backward", "phase.optimizer")
MATMULS = {"aten::bmm", "aten::baddbmm", "aten::matmul", "aten::mm", "aten::addmm"}
COPIES = {"aten::contiguous", "aten::clone", "aten::copy_"}
BUCKETING = {"aten::cat", "aten::split", "aten::split_with_sizes"}
CATEGORIES = ("Newton–Schulz matmuls", "map, other", "layout copies", "bucketing", "direction", "update",
              "AdamW part", "other ops", "Python and dispatch")
# A Python tracer event's name: "opspec/optim/apply.py(43): decoupled_update" (file, first line, function).
FRAME = re.compile(r"(?P<file>.+)\(\d+\): (?P<function>[^ ]+)$")


def frame_of(fn: Callable[..., Any]) -> tuple[str, str]:
    """(file under its package root, function name) of `fn`'s frames: ("opspec/optim/layouts.py", "to_matrices")."""
    fn = inspect.unwrap(fn)
    return fn.__module__.replace(".", "/") + ".py", fn.__code__.co_name


def step_pieces(optimizer: torch.optim.Optimizer) -> dict[tuple[str, str], str]:
    """The frames of `optimizer`'s step that are pieces, (file, function) → piece (the library is only read)."""
    pieces = {frame_of(getattr(step_module, name)): piece
              for name, piece in STEP_PIECES.items() if hasattr(step_module, name)}
    pieces |= {frame_of(fn): DIRECTION for fn in vars(directions_module).values()
               if inspect.isfunction(fn) and fn.__module__ == directions_module.__name__}
    direction = getattr(type(optimizer), "direction", None)
    if inspect.isfunction(direction):
        pieces[frame_of(direction)] = DIRECTION
    return pieces


def piece_of(event: FunctionEvent, pieces: dict[tuple[str, str], str]) -> str | None:
    """The piece whose Python frame `event` is, or None (an ATen op, a named range, any other frame)."""
    match = FRAME.match(event.name)
    if match is None:
        return None
    path = match["file"].replace("\\", "/")
    for (file, function), piece in pieces.items():
        if function == match["function"] and (path == file or path.endswith("/" + file)):
            return piece
    return None


def top_level_ops(event: FunctionEvent, pieces: dict[tuple[str, str], str],
                  piece: str | None = None) -> Iterator[tuple[str | None, FunctionEvent]]:
    """Each top-level ATen op under `event` in the order it ran, with the outermost piece whose frame is above
    it (None: the step body; frames are events only in a trace taken with with_stack=True)."""
    for child in event.cpu_children:
        if child.name.startswith("aten::"):
            yield piece, child
        else:
            yield from top_level_ops(child, pieces, piece or piece_of(child, pieces))


def category(piece: str | None, op: str) -> str:
    """The category of a top-level ATen op `op` run inside the step's piece `piece` (None: the step body)."""
    if piece == MAP:
        if op in MATMULS:
            return "Newton–Schulz matmuls"
        return "layout copies" if op in COPIES else "map, other"
    if piece is not None:
        return piece
    return "bucketing" if op in BUCKETING else "other ops"


def charge(event: FunctionEvent, traced: list[tuple[str | None, str]], totals: Counter, ops: Counter) -> None:
    """Add the CPU time (µs) of each top-level ATen op of the profiled optimizer step `event` to its category,
    its piece taken from the op at the same place in the traced step `traced` ((piece, op name) in order)."""
    timed = [op for _, op in top_level_ops(event, {})]
    names = [op.name for op in timed]
    if names != [name for _, name in traced]:
        at = next((i for i, (a, (_, b)) in enumerate(zip(names, traced)) if a != b), min(len(names), len(traced)))
        raise RuntimeError(f"a profiled optimizer step ran other ATen ops than the traced one ({len(names)} against "
                           f"{len(traced)}, first difference at op {at}); a first step creates the optimizer's state: "
                           f"warm up at least one step")
    for (piece, name), op in zip(traced, timed):
        totals[category(piece, name)] += op.cpu_time_total
        ops[name] += 1


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, a: torch.Tensor, u: torch.Tensor) -> None:
    """One training step in named phases: zero_grad, forward with the loss, backward, optimizer step."""
    with torch.profiler.record_function("phase.zero_grad"):
        optimizer.zero_grad(set_to_none=True)
    with torch.profiler.record_function("phase.forward"):
        loss = relative_l2(net(a), u).mean()
    with torch.profiler.record_function("phase.backward"):
        loss.backward()
    with torch.profiler.record_function("phase.optimizer"):
        optimizer.step()


def build_setting(setting: str, optimizer_name: str, overrides: Iterable[str]) -> tuple[Any, Any, torch.Tensor, torch.Tensor]:
    """(model with unit normalizers, optimizer, random input batch, random target batch) of a setting's config."""
    cfg = load_config(str(ROOT / "configs" / f"{setting}.yaml"), [*overrides, f"optimizer.name={optimizer_name}"])
    seed_everything(cfg.seed)
    meta = problem_meta(cfg)
    net = build_net(cfg.model, meta)
    optimizer = optimizer_from_config(net.model, cfg.optimizer)
    grid = [int(cfg.data.train_resolution)] * meta["n_space"]
    a = torch.randn(int(cfg.train.batch_size), meta["in_channels"], *grid)
    u = torch.randn(int(cfg.train.batch_size), meta["out_channels"], *grid)
    return net, optimizer, a, u


def profile(setting: str, optimizer_name: str, steps: int, warmup: int, overrides: Iterable[str]) -> dict[str, Any]:
    """Per-step µs of each phase and of each optimizer category, and the optimizer's ATen ops per step."""
    net, optimizer, a, u = build_setting(setting, optimizer_name, overrides)
    cpu = [torch.profiler.ProfilerActivity.CPU]
    for _ in range(warmup):
        train_step(net, optimizer, a, u)
    with torch.profiler.profile(activities=cpu) as prof:
        for _ in range(steps):
            train_step(net, optimizer, a, u)
    with torch.profiler.profile(activities=cpu, with_stack=True) as tracer:
        train_step(net, optimizer, a, u)
    pieces = step_pieces(optimizer)
    [traced_step] = [event for event in tracer.events() if event.name == "phase.optimizer"]
    traced = [(piece, op.name) for piece, op in top_level_ops(traced_step, pieces)]
    phases: Counter = Counter()
    totals: Counter = Counter()
    ops: Counter = Counter()
    for event in prof.events():
        if event.name in PHASES and event.cpu_parent is None:
            phases[event.name] += event.cpu_time_total
            if event.name == "phase.optimizer":
                charge(event, traced, totals, ops)
    totals["Python and dispatch"] = phases["phase.optimizer"] - sum(totals.values())
    return {"phases": {k: v / steps for k, v in phases.items()}, "categories": {k: v / steps for k, v in totals.items()},
            "ops_per_step": sum(ops.values()) / steps, "matrices": matrix_count(optimizer)}


def matrix_count(optimizer: torch.optim.Optimizer) -> int:
    """Matrices the spectral map takes per step (0 for a non-spectral optimizer)."""
    from opspec.optim.layouts import matrix_shape

    if not hasattr(optimizer, "layout_of"):
        return 0
    return sum(matrix_shape(tuple(p.shape), optimizer.layout_of(p, g))[0]
               for g in optimizer.param_groups if g["use_spectral"] for p in g["params"])


def step_floor(muon: dict[str, Any], adamw: dict[str, Any]) -> float:
    """Muon's training step over AdamW's if every part of Muon's step but its Newton–Schulz matmuls were free:
    (AdamW's forward + backward + zero_grad + the matmuls) / AdamW's whole step. The matmuls already run at the
    CPU's rate, so only fewer of them (a shorter schedule, smaller matrices) could go below it."""
    adamw_whole = sum(adamw["phases"].values())
    model = adamw_whole - adamw["phases"]["phase.optimizer"]
    return (model + muon["categories"].get("Newton–Schulz matmuls", 0.0)) / adamw_whole


def table(setting: str, muon: dict[str, Any], adamw: dict[str, Any]) -> str:
    """The Markdown table of one setting: each category's µs per step and shares."""
    whole = sum(muon["phases"].values())
    step = muon["phases"]["phase.optimizer"]
    rows = [("forward + backward + zero_grad", f"{whole - step:.0f}", f"{(whole - step) / whole:.1%}", "")]
    rows.append(("Muon step, all", f"{step:.0f}", f"{step / whole:.1%}", "100%"))
    for name in CATEGORIES:
        us = muon["categories"].get(name, 0.0)
        rows.append((f"  {name}", f"{us:.0f}", f"{us / whole:.1%}", f"{us / step:.1%}"))
    adamw_step = adamw["phases"]["phase.optimizer"]
    adamw_whole = sum(adamw["phases"].values())
    rows.append(("torch AdamW step (same model, its own run)", f"{adamw_step:.0f}", f"{adamw_step / adamw_whole:.1%}", ""))
    head = (f"**{setting}**: {muon['matrices']} matrices in the map; {muon['ops_per_step']:.0f} ATen ops per Muon step "
            f"(AdamW: {adamw['ops_per_step']:.0f}); training step Muon / AdamW {whole / adamw_whole:.3f}, "
            f"floor {step_floor(muon, adamw):.3f}\n\n")
    return head + markdown_table(("part", "µs / step", "share of training step", "share of Muon step"), rows,
                                 ("left", "right", "right", "right"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=SETTINGS, help="config names under configs/")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps per setting")
    parser.add_argument("--warmup", type=int, default=3, help="unprofiled steps first")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (the comparisons used 1)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every setting")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()
    started = time.perf_counter()
    for setting in args.settings.split(","):
        muon = profile(setting, "muon", args.steps, args.warmup, args.overrides)
        adamw = profile(setting, "adamw", args.steps, args.warmup, args.overrides)
        print(table(setting, muon, adamw) + "\n", flush=True)
    print(f"threads {args.threads}; keep_freed_memory {kept}; {args.steps} profiled steps after {args.warmup} warm-up; "
          f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
