"""Seconds per training epoch of each optimizer on each comparison setting, timed side by side (issue 17).

    python -m tools.bench_epoch_cost --settings darcy_fno,navier_stokes_fno --optimizers adamw,muon

The wall-clock column of `compare_optimizers --budgets` multiplies a matched budget by the ratio of
seconds per epoch; the comparison runs themselves share the CPU with each other, so this tool measures
that ratio on an otherwise idle machine: for each setting (`configs/<setting>.yaml`) it trains every
optimizer for a few epochs in this process, optimizers alternating and the order reversed each round,
and reports the median epoch time (epochs after the first: warm-up) and its ratio to the first
optimizer's. The epoch includes what a real run does per epoch (training steps, the optimizer's own
step, the test evaluation). Feed the ratios back with `compare_optimizers --epoch-cost NAME=RATIO`.

Before and after a change (issue 23): `--against PATH` times the tree at PATH (a git worktree of the
old commit) beside this one, each run in a fresh process with PYTHONPATH and the working folder set
to its tree, every (tree, optimizer) pair alternating in ABBA order; both trees read the same data
files (this tree's `datasets/`, generated once when missing). Ratios are to the first optimizer of
the same tree:

    git worktree add /tmp/opspec-old OLD_COMMIT
    python -m tools.bench_epoch_cost --against /tmp/opspec-old --epochs 3 --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from opspec.training.config import load_config
from opspec.training.trainer import Trainer
from tools.harness import ROOT, alternate, markdown_table, run_json

# The child of --against: one training run in the tree it is started in, its epochs' seconds as JSON.
# It uses only what every tree has (load_config, Trainer, where either lives), so an older commit runs it unchanged.
CHILD = """import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
try:
    from opspec.training.config import load_config
    from opspec.training.trainer import Trainer
except ImportError:  # a tree from before the training package (84f24f1 and older)
    from opspec.config import load_config
    from opspec.train import Trainer
print(json.dumps([h["epoch_seconds"] for h in Trainer(load_config(sys.argv[2], sys.argv[3:])).fit()]))"""


def epoch_seconds(setting: str, optimizer: str, lr: float | None, epochs: int, out: Path,
                  overrides: list[str]) -> list[float]:
    """Seconds of each of `epochs` epochs of one fresh training run."""
    extra = [f"optimizer.lr={lr}"] if lr is not None else []
    cfg = load_config(str(ROOT / "configs" / f"{setting}.yaml"), [
        *overrides, f"optimizer.name={optimizer}", *extra, f"train.epochs={epochs}", "train.progress=false",
        f"out_dir={out}", f"run_name={setting}_{optimizer}_{time.monotonic_ns()}"])
    return [h["epoch_seconds"] for h in Trainer(cfg).fit()]


def run_overrides(setting: str, optimizer: str, lr: float | None, epochs: int, out: Path,
                  overrides: list[str]) -> list[str]:
    """The overrides of one timed run: the shared data file (absolute, in this tree), the optimizer and its LR."""
    data = Path(load_config(str(ROOT / "configs" / f"{setting}.yaml")).data.path)
    extra = [f"optimizer.lr={lr}"] if lr is not None else []
    return [f"data.path={data if data.is_absolute() else ROOT / data}", *overrides, f"optimizer.name={optimizer}",
            *extra, f"train.epochs={epochs}", "train.progress=false", f"out_dir={out}",
            f"run_name={setting}_{optimizer}_{time.monotonic_ns()}"]


def tree_epoch_seconds(tree: Path, setting: str, threads: int, overrides: list[str]) -> list[float]:
    """Seconds of each epoch of one run of `tree`'s code in a fresh process (PYTHONPATH and folder: the tree)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", CHILD, str(threads), str(tree / "configs" / f"{setting}.yaml"), *overrides]
    return run_json(cmd, cwd=tree, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="darcy_fno,darcy_tfno,darcy_deeponet,burgers_fno,burgers_deeponet,"
                                              "navier_stokes_fno", help="config names under configs/")
    parser.add_argument("--optimizers", default="adamw,muon", help="the first is the reference")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is dropped as warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="runs per optimizer, alternating")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (the comparisons used 1)")
    parser.add_argument("--lr", action="append", default=[], metavar="SETTING:NAME=LR",
                        help="an LR other than the config's (the step cost does not depend on it)")
    parser.add_argument("--new-override", dest="new_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="with --against, repeatable: an override for the new tree only (a key the old one does "
                             "not know, e.g. data.val_fraction=0 and train.schedule_unit=epoch for the same work per epoch)")
    parser.add_argument("--against", type=Path, default=None, metavar="PATH",
                        help="another tree (the old commit's worktree): time both, fresh processes, ABBA")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is warm-up)")
    torch.set_num_threads(args.threads)
    lrs = {}
    for item in args.lr:
        key, _, value = item.partition("=")
        lrs[key] = float(value)
    optimizers = args.optimizers.split(",")
    trees = {"new": ROOT, "old": args.against.resolve()} if args.against is not None else {}
    variants = [f"{tree}:{name}" for tree in ("old", "new") for name in optimizers] if trees else optimizers
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_epoch_cost_") as tmp:
        for setting in args.settings.split(","):
            def measure(r: int, variant: str) -> list[float]:
                tree, _, name = variant.rpartition(":")
                lr = lrs.get(f"{setting}:{name}")
                if tree:
                    extra = args.new_overrides if tree == "new" else []
                    return tree_epoch_seconds(trees[tree], setting, args.threads,
                                              run_overrides(setting, name, lr, args.epochs, Path(tmp), args.overrides + extra))
                return epoch_seconds(setting, name, lr, args.epochs, Path(tmp), args.overrides)

            def say(r: int, variant: str, secs: list[float]) -> None:
                print(f"{setting} {variant} round {r}: " + " ".join(f"{s:.4f}" for s in secs), flush=True)

            runs = alternate(variants, args.rounds, measure, say)
            times = {v: [s for secs in runs[v] for s in secs[1:]] for v in variants}  # epoch 1: warm-up
            for variant in variants:
                tree, _, name = variant.rpartition(":")
                ref = statistics.median(times[f"{tree}:{optimizers[0]}" if tree else optimizers[0]])
                med = statistics.median(times[variant])
                versus = f"{med / statistics.median(times[f'old:{name}']):.3f}" if tree else ""
                rows.append((setting, variant, f"{med:.3g}", f"{min(times[variant]):.3g}–{max(times[variant]):.3g}",
                             f"{med / ref:.3f}", *([versus] if trees else [])))
    where = f"; old = {trees['old']}, new = {trees['new']} (fresh processes)" if trees else ""
    print(f"\nthreads {args.threads}; {args.rounds} rounds × {args.epochs - 1} timed epochs per variant{where}; "
          f"total {time.perf_counter() - started:.0f} s\n")
    header = ("setting", "optimizer", "s / epoch (median)", "min–max", f"ratio to {optimizers[0]}")
    print(markdown_table(header + (("vs old, same optimizer",) if trees else ()), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
