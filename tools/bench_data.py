"""Out-of-core against in-memory training throughput on a canonical file bigger than memory.

Writes a synthetic canonical file of `--size` bytes (default 8G: 2-D fields on a 129² nodal grid,
float32, CanonicalWriter's chunk layout), then trains the same FNO (same seed, AdamW) for a fixed
number of steps twice, each in a fresh subprocess after evicting the file from the page cache
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

    python tools/bench_data.py                       # 8 GB file under datasets/, removed afterwards
    python tools/bench_data.py --size 200M --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def run_variant(args: argparse.Namespace) -> dict:
    """Train for args.steps steps in this process; samples/s and peak RSS (MiB) as a dict."""
    import torch

    from opspec.training.config import load_config
    from opspec.data import OperatorDataset
    from opspec.data import batches
    from opspec.data.batches import epoch_loader
    from opspec.training.metrics import relative_l2
    from opspec.models import build_model
    from opspec.training.runtime import keep_freed_memory

    kept = False if args.no_keep_freed_memory else keep_freed_memory()
    if args.worker_niceness is not None:
        batches.WORKER_NICENESS = args.worker_niceness
    torch.manual_seed(0)
    cfg = load_config(overrides=[f"model.hidden_channels={args.width}", f"model.n_modes=[{args.modes},{args.modes}]"])
    start = time.perf_counter()
    in_memory = args.variant == "in-memory"
    data = OperatorDataset(args.file, "train", args.resolution, in_memory=in_memory,
                           n=args.in_memory_samples if in_memory else None)
    load_seconds = time.perf_counter() - start
    a0, u0 = data[0]
    model = build_model(cfg.model, a0.shape[0], u0.shape[0], a0.ndim - 1, data.file.grid)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    workers = 0 if in_memory else args.workers
    steps = samples = 0
    epoch = 0
    start = first = time.perf_counter()
    waited = 0.0  # time the timed steps spent waiting for their batch
    while steps <= args.steps:
        epoch += 1
        asked = time.perf_counter()
        for a, u, n_global, weight in epoch_loader(data, args.batch_size, 0, epoch, workers):
            if steps > 0:
                waited += time.perf_counter() - asked
            optimizer.zero_grad(set_to_none=True)
            loss = relative_l2(model(a), u).mean()
            loss.backward()
            optimizer.step()
            if steps == 0:  # the clock starts after one warm-up step (the first read, worker start-up)
                start = time.perf_counter()
                cpu, faults = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                sys_cpu = resource.getrusage(resource.RUSAGE_SELF).ru_stime
            else:
                samples += len(a)
            steps += 1
            if steps > args.steps:
                break
            asked = time.perf_counter()
    seconds = time.perf_counter() - start
    cpu_per_step = (time.process_time() - cpu) / args.steps
    faults_per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
    sys_per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys_cpu) / args.steps
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped when the loop broke off
    worker_rss = children.ru_maxrss / 1024 if workers else 0.0
    worker_cpu = (children.ru_utime + children.ru_stime) / args.steps if workers else 0.0
    return {"variant": args.variant, "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds,
            "warmup_seconds": start - first, "wait_seconds": waited,
            "train_samples": len(data), "load_seconds": load_seconds, "rss_mib": self_rss, "worker_rss_mib": worker_rss,
            "workers": workers, "peak_rss_mib": self_rss + workers * worker_rss, "keep_freed_memory": kept,
            "cpu_s_per_step": cpu_per_step, "sys_s_per_step": sys_per_step, "worker_cpu_s_per_step": worker_cpu,
            "minor_faults_per_step": faults_per_step}


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
        runs: dict[str, list[dict]] = {"out-of-core": [], "in-memory": []}
        for round_ in range(args.rounds):
            for variant in runs:
                if args.warm:
                    warm(path)
                else:
                    evict(path)
                cmd = [sys.executable, __file__, "--variant", variant, "--file", str(path), "--steps", str(args.steps),
                       "--batch-size", str(args.batch_size), "--resolution", str(args.resolution), "--workers",
                       str(args.workers), "--in-memory-samples", str(subset), "--width", str(args.width),
                       "--modes", str(args.modes)] + (["--no-keep-freed-memory"] if args.no_keep_freed_memory else [])
                cmd += [] if args.worker_niceness is None else ["--worker-niceness", str(args.worker_niceness)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                runs[variant].append(r)
                extra = f", {r['workers']} worker(s) peak {r['worker_rss_mib']:.0f} MiB each" if r["workers"] else ""
                print(f"round {round_ + 1} {variant:>12}: {r['samples_per_s']:7.1f} samples/s over {r['samples']} "
                      f"samples ({r['wait_seconds']:.1f} of {r['seconds']:.1f} s waiting for data) after a {r['warmup_seconds']:.1f} s warm-up step ({r['train_samples']} train samples, "
                      f"loaded in {r['load_seconds']:.1f} s); peak RSS {r['rss_mib']:.0f} MiB{extra}; per step "
                      f"{r['minor_faults_per_step']:.0f} minor page faults, {r['cpu_s_per_step']:.3f} CPU s "
                      f"({r['sys_s_per_step']:.3f} in the kernel)"
                      + (f" + {r['worker_cpu_s_per_step']:.3f} in the worker(s)" if r["workers"] else "") + " "
                      f"(keep_freed_memory {r['keep_freed_memory']})", flush=True)
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
