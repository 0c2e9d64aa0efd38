"""Startup overhead of a sweep trial: the same runs as Ray Tune trials and started by hand (issue 25).

    python -m tools.bench_sweep --lrs 0.001,0.002,0.004,0.008 --concurrent 2 --epochs 3 data.path=datasets/darcy.h5

By hand: each run is `python -m opspec.train` in its own process, `--concurrent` at a time, one torch
thread each (OMP_NUM_THREADS=1). As a sweep: `python -m opspec.sweep` on an embedded local Ray with
`--num-cpus` = `--concurrent`, one CPU and one thread per trial, train.log=none. Reports both
wall-clocks (from the command's start to its end, Ray's start included), their ratio, and the
overhead per trial; the runs train the same configs (AdamW at each LR, seed 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def by_hand(lrs: list[float], args: argparse.Namespace, out: Path) -> float:
    """Seconds for every run as its own `python -m opspec.train`, `concurrent` at a time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started, running = time.perf_counter(), []
    for lr in lrs:
        while len(running) >= args.concurrent:
            running = [p for p in running if p.poll() is None]
            time.sleep(0.05)
        cmd = [sys.executable, "-m", "opspec.train", "--config", args.config, *args.overrides, "optimizer.name=adamw",
               f"optimizer.lr={lr}", "seed=0", f"train.epochs={args.epochs}", "train.progress=false",
               f"out_dir={out}", f"run_name=lr{lr:g}"]
        running.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
    for p in running:
        if p.wait() != 0:
            raise SystemExit(f"a hand-started run failed: {p.args}")
    return time.perf_counter() - started


def as_sweep(lrs: list[float], args: argparse.Namespace, out: Path) -> float:
    """Seconds for the same runs as one `python -m opspec.sweep` on local Ray."""
    cmd = [sys.executable, "-m", "opspec.sweep", "--num-cpus", str(args.concurrent), "--cpus-per-trial", "1",
           "--threads-per-trial", "1", "--log", "none", "--optimizers", "adamw", "--lrs", "adamw=" + ",".join(map(str, lrs)),
           "--extend-edges", "0", "--epochs", str(args.epochs), "--config", args.config, "--out", str(out),
           *args.overrides]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the sweep failed (exit {done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Time both ways and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", default="0.001,0.002,0.004,0.008", help="one run (trial) per LR")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--config", default=str(ROOT / "configs" / "darcy_fno.yaml"))
    parser.add_argument("--order", default="hand,sweep", help="which goes first")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    lrs = [float(x) for x in args.lrs.split(",")]
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for what in args.order.split(","):
            run = by_hand if what == "hand" else as_sweep
            seconds[what] = run(lrs, args, Path(tmp) / what)
        inside = [json.loads(p.read_text())["wall_seconds"] for p in (Path(tmp) / "sweep" / "results").glob("*.json")]
    n = len(lrs)
    print(f"{n} runs, {args.concurrent} at a time, {args.epochs} epochs each")
    print(f"by hand: {seconds['hand']:.1f} s   as a sweep on local Ray: {seconds['sweep']:.1f} s   "
          f"ratio {seconds['sweep'] / seconds['hand']:.2f}")
    print(f"overhead per trial: {(seconds['sweep'] - seconds['hand']) * args.concurrent / n:.1f} s of a slot "
          f"(the trials' own in-process training: {sum(inside) / n:.1f} s on average)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
