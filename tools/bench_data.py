"""Out-of-core against in-memory training throughput on a canonical file bigger than memory.

Writes a synthetic canonical file of `--size` bytes (default 8G: 2-D fields on a 129² nodal grid,
float32, CanonicalWriter's chunk layout), then trains the same FNO (same seed, AdamW, opspec's Trainer
with identity normalizers) for a fixed number of steps twice, each in a fresh subprocess (the
variants alternate, order reversed each round) after evicting the file from the page cache
(posix_fadvise DONTNEED; `--warm` reads it into the cache instead): out of core (`in_memory=False`:
shuffled chunk-aligned windows read by DataLoader workers) over the whole file, and in memory over a
subset that fits (its loading time is reported, not counted). Prints samples/s and peak RSS of each;
the last line is

    out-of-core / in-memory samples/s: R (peak RSS M MiB)

where M is the out-of-core run's peak RSS: the training process plus each worker's peak (an upper
bound: pages the workers share with it are counted again).

Each run applies the glibc malloc setting the trainer applies (`train.keep_freed_memory`, default on;
`--no-keep-freed-memory` skips it). Without it the comparison is unfair: loading the in-memory
subset frees 32 MiB read blocks, which raises glibc's dynamic mmap threshold as a side effect, so
the in-memory run reuses its step's activations while the out-of-core run maps and faults them in
afresh every step. Each line also gives load-independent counts of the training process per timed
step: its minor page faults and its CPU seconds (all its threads, and the part spent in the kernel),
and the reading workers' CPU seconds over their whole life divided by the timed steps.

    python -m tools.bench_data                       # 8 GB file under datasets/, removed afterwards
    python -m tools.bench_data --size 200M --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from opspec.training.callbacks import Callback
from tools.harness import alternate, run_json, tool_command

GRID = 129


def parse_size(text: str) -> int:
    """'8G', '200M', '512k' or a byte count → bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[bB]?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected e.g. 8G, 200M or a byte count")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " "))


def write_file(path: Path, size: int, grid: int = GRID) -> int:
    """A canonical file of about `size` bytes of synthetic Darcy-like pairs; returns its train samples."""
    import numpy as np

    from opspec.data.canonical import CanonicalWriter

    sample = 2 * grid * grid * 4
    n = max(8, size // sample)
    n_test = max(4, n // 50)
    n_train = n - n_test
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 1.0, grid)
    basis = rng.normal(size=(64, grid, grid)).astype(np.float32)  # each sample: a random mix of 64 fields
    block = max(1, 64 * 2**20 // sample)
    with CanonicalWriter(path, problem="darcy", coords={"x": x, "y": x}, attrs={"generator": "tools/bench_data.py"}) as w:
        for split, count in (("train", n_train), ("test", n_test)):
            w.add_split(split, count)
        for split, count in (("train", n_train), ("test", n_test)):
            for lo in range(0, count, block):
                k = min(block, count - lo)
                mix = rng.normal(size=(k, 64)).astype(np.float32) / 8
                a = np.einsum("km,mxy->kxy", mix, basis)
                w.append(split, a, np.tanh(a))
    return n_train


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache, so a run reads it from disk."""
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(path: Path) -> None:
    """Read the whole file once, so a run finds it in the page cache (`--warm`: the disk left out)."""
    with path.open("rb") as fh:
        while fh.read(64 * 2**20):
            pass


class StepClock(Callback):
    """A Trainer callback timing `steps` steps after one warm-up step (the first read, worker start-up):
    wall and CPU time, the time spent waiting for each batch, minor page faults; then it stops the run."""

    def __init__(self, steps: int) -> None:
        self.steps, self.done, self.samples = steps, 0, 0
        self.waited = 0.0  # time the timed steps spent waiting for their batch
        self.first = self.start = self.ended = time.perf_counter()
        self.cpu = self.sys_cpu = 0.0
        self.faults = 0

    def _usage(self) -> tuple[float, int, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return time.process_time(), usage.ru_minflt, usage.ru_stime

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        if self.done == 0:  # the warm-up step's clock starts with the first epoch
            self.first = time.perf_counter()
        self.ended = time.perf_counter()  # waiting for the next epoch's first batch counts from here

    def on_step_start(self, trainer: Any, step: Any) -> None:
        if self.done > 0:
            self.waited += time.perf_counter() - self.ended

    def on_step_end(self, trainer: Any, step: Any) -> None:
        self.done += 1
        self.ended = time.perf_counter()
        if self.done == 1:  # the clock starts after the warm-up step
            self.start = self.ended
            self.cpu, self.faults, self.sys_cpu = self._usage()
            return
        self.samples += len(step.a)
        if self.done > self.steps:
            cpu, faults, sys_cpu = self._usage()
            self.cpu, self.faults, self.sys_cpu = cpu - self.cpu, faults - self.faults, sys_cpu - self.sys_cpu
            trainer.should_stop = True


def run_variant(args: argparse.Namespace) -> dict:
    """Train for args.steps steps in this process (opspec's Trainer, AdamW, identity normalizers: none
    is fitted, that would read the file); samples/s and peak RSS (MiB) as a dict."""
    from opspec.data import OperatorDataset, UnitGaussianNormalizer
    from opspec.training.config import load_config
    from opspec.training.runtime import keep_freed_memory
    from opspec.training.trainer import Trainer

    kept = False if args.no_keep_freed_memory else keep_freed_memory()
    in_memory = args.variant == "in-memory"
    workers = 0 if in_memory else args.workers
    cfg = load_config(overrides=[
        f"model.hidden_channels={args.width}", f"model.n_modes=[{args.modes},{args.modes}]", "optimizer.name=adamw",
        "optimizer.lr=1e-3", f"train.batch_size={args.batch_size}", f"train.num_workers={workers}", "train.device=cpu",
        "train.keep_freed_memory=false", "train.progress=false", "seed=0", f"data.path={args.file}", "data.generate=false",
        f"data.in_memory={in_memory}", f"data.train_resolution={args.resolution}", f"data.eval_resolutions=[{args.resolution}]"])
    start = time.perf_counter()
    data = OperatorDataset(args.file, "train", args.resolution, in_memory=in_memory,
                           n=args.in_memory_samples if in_memory else None)
    load_seconds = time.perf_counter() - start
    test = OperatorDataset(data.file, "test", args.resolution, in_memory=False)
    clock = StepClock(args.steps)
    with tempfile.TemporaryDirectory(prefix="bench_data_run_") as run_dir:
        trainer = Trainer(cfg, run_dir=run_dir, callbacks=[clock], datasets=(data, test),
                          normalizers=(UnitGaussianNormalizer(1, 2), UnitGaussianNormalizer(1, 2)),
                          worker_niceness=args.worker_niceness)
        epoch = 0
        while not trainer.should_stop:  # epochs of steps only: no test error, no checkpoint
            epoch += 1
            trainer.train_epoch(epoch)
        trainer.close()
    seconds = clock.ended - clock.start
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped when the loop broke off
    worker_rss = children.ru_maxrss / 1024 if workers else 0.0
    worker_cpu = (children.ru_utime + children.ru_stime) / args.steps if workers else 0.0
    return {"variant": args.variant, "samples": clock.samples, "seconds": seconds, "samples_per_s": clock.samples / seconds,
            "warmup_seconds": clock.start - clock.first, "wait_seconds": clock.waited,
            "train_samples": len(data), "load_seconds": load_seconds, "rss_mib": self_rss, "worker_rss_mib": worker_rss,
            "workers": workers, "peak_rss_mib": self_rss + workers * worker_rss, "keep_freed_memory": kept,
            "cpu_s_per_step": clock.cpu / args.steps, "sys_s_per_step": clock.sys_cpu / args.steps,
            "worker_cpu_s_per_step": worker_cpu, "minor_faults_per_step": clock.faults / args.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("8G"), help="file size (default 8G)")
    parser.add_argument("--file", type=Path, default=None, help="use this canonical file instead of writing one")
    parser.add_argument("--keep", action="store_true", help="keep the file it wrote")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run (after one warm-up step)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each variant, alternating; medians reported")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=33, help="training resolution (strided from 129)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the out-of-core run (one keeps "
                        "ahead of the model here; more compete with its threads for the cores)")
    parser.add_argument("--in-memory-samples", type=int, default=None,
                        help="subset the in-memory run loads (default: what 1 GiB of stored samples holds)")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--modes", type=int, default=12)
    parser.add_argument("--no-keep-freed-memory", action="store_true",
                        help="skip the glibc malloc setting the trainer applies (runtime.keep_freed_memory)")
    parser.add_argument("--warm", action="store_true",
                        help="read the file into the page cache before each run instead of evicting it (separates "
                             "the reading pipeline's cost from the disk's; needs free RAM for the whole file)")
    parser.add_argument("--worker-niceness", type=int, default=None,
                        help="os.nice increment of the reading workers (default: opspec.data.batches.WORKER_NICENESS)")
    parser.add_argument("--variant", choices=("out-of-core", "in-memory"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # a child run
        print(json.dumps(run_variant(args)))
        return
    wrote = args.file is None
    path = args.file or Path("datasets") / f"bench_data_{args.size // 2**20}M.h5"
    try:
        if wrote:
            path.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            n = write_file(path, args.size)
            print(f"wrote {path}: {path.stat().st_size / 2**20:.0f} MiB, {n} train samples at {GRID}² "
                  f"in {time.perf_counter() - start:.0f} s", flush=True)
        sample_bytes = 2 * GRID * GRID * 4
        subset = args.in_memory_samples or max(args.batch_size, 2**30 // sample_bytes)
        child_args = ["--file", str(path), "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--resolution",
                      str(args.resolution), "--workers", str(args.workers), "--in-memory-samples", str(subset), "--width",
                      str(args.width), "--modes", str(args.modes)] + (["--no-keep-freed-memory"] if args.no_keep_freed_memory else [])
        child_args += [] if args.worker_niceness is None else ["--worker-niceness", str(args.worker_niceness)]

        def child(round_: int, variant: str) -> dict:
            if args.warm:
                warm(path)
            else:
                evict(path)
            return run_json(tool_command("bench_data", "--variant", variant, *child_args))

        def say(round_: int, variant: str, r: dict) -> None:
            extra = f", {r['workers']} worker(s) peak {r['worker_rss_mib']:.0f} MiB each" if r["workers"] else ""
            print(f"round {round_ + 1} {variant:>12}: {r['samples_per_s']:7.1f} samples/s over {r['samples']} "
                  f"samples ({r['wait_seconds']:.1f} of {r['seconds']:.1f} s waiting for data) after a {r['warmup_seconds']:.1f} s warm-up step ({r['train_samples']} train samples, "
                  f"loaded in {r['load_seconds']:.1f} s); peak RSS {r['rss_mib']:.0f} MiB{extra}; per step "
                  f"{r['minor_faults_per_step']:.0f} minor page faults, {r['cpu_s_per_step']:.3f} CPU s "
                  f"({r['sys_s_per_step']:.3f} in the kernel)"
                  + (f" + {r['worker_cpu_s_per_step']:.3f} in the worker(s)" if r["workers"] else "") + " "
                  f"(keep_freed_memory {r['keep_freed_memory']})", flush=True)

        runs = alternate(["out-of-core", "in-memory"], args.rounds, child, say)
        rate = {v: statistics.median(r["samples_per_s"] for r in rs) for v, rs in runs.items()}
        peak = max(r["peak_rss_mib"] for r in runs["out-of-core"])
        print(f"median samples/s over {args.rounds} round(s): out-of-core {rate['out-of-core']:.1f}, "
              f"in-memory {rate['in-memory']:.1f}")
        print(f"out-of-core / in-memory samples/s: {rate['out-of-core'] / rate['in-memory']:.2f} (peak RSS {peak:.0f} MiB)")
    finally:
        if wrote and not args.keep and path.exists():
            path.unlink()
            print(f"removed {path}")


if __name__ == "__main__":
    main()
