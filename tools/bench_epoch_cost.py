"""Seconds per training epoch of each optimizer on each comparison setting, timed side by side (issue 17).

    python -m tools.bench_epoch_cost --settings darcy_fno,navier_stokes_fno --optimizers adamw,muon

The wall-clock column of `compare_optimizers --budgets` multiplies a matched budget by the ratio of
seconds per epoch; the comparison runs themselves share the CPU with each other, so this tool measures
that ratio on an otherwise idle machine: for each setting (`configs/<setting>.yaml`) it trains every
optimizer for a few epochs in this process, optimizers alternating and the order reversed each round,
and reports the median epoch time (epochs after the first: warm-up) and its ratio to the first
optimizer's. The epoch includes what a real run does per epoch (training steps, the optimizer's own
step, the test evaluation). Feed the ratios back with `compare_optimizers --epoch-cost NAME=RATIO`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from opspec.training.config import load_config
from opspec.training.trainer import Trainer
from tools.harness import ROOT, alternate, markdown_table


def epoch_seconds(setting: str, optimizer: str, lr: float | None, epochs: int, out: Path,
                  overrides: list[str]) -> list[float]:
    """Seconds of each of `epochs` epochs of one fresh training run."""
    extra = [f"optimizer.lr={lr}"] if lr is not None else []
    cfg = load_config(str(ROOT / "configs" / f"{setting}.yaml"), [
        *overrides, f"optimizer.name={optimizer}", *extra, f"train.epochs={epochs}", "train.progress=false",
        f"out_dir={out}", f"run_name={setting}_{optimizer}_{time.monotonic_ns()}"])
    return [h["epoch_seconds"] for h in Trainer(cfg).fit()]


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
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_epoch_cost_") as tmp:
        for setting in args.settings.split(","):
            def measure(r: int, name: str) -> list[float]:
                return epoch_seconds(setting, name, lrs.get(f"{setting}:{name}"), args.epochs, Path(tmp), args.overrides)

            def say(r: int, name: str, secs: list[float]) -> None:
                print(f"{setting} {name} round {r}: " + " ".join(f"{s:.4f}" for s in secs), flush=True)

            runs = alternate(optimizers, args.rounds, measure, say)
            times = {name: [s for secs in runs[name] for s in secs[1:]] for name in optimizers}  # epoch 1: warm-up
            ref = statistics.median(times[optimizers[0]])
            for name in optimizers:
                med = statistics.median(times[name])
                rows.append((setting, name, f"{med:.3g}", f"{min(times[name]):.3g}–{max(times[name]):.3g}", f"{med / ref:.3f}"))
    print(f"\nthreads {args.threads}; {args.rounds} rounds × {args.epochs - 1} timed epochs; "
          f"total {time.perf_counter() - started:.0f} s\n")
    print(markdown_table(("setting", "optimizer", "s / epoch (median)", "min–max", f"ratio to {optimizers[0]}"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
