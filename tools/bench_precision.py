"""Effect of train.precision and train.compile on the default experiment: samples/s and final error.

Each variant is a whole `python -m opspec.train` run (the default experiment unless overrides say
otherwise) in a fresh process; with --rounds > 1 the variants alternate, order reversed each round.
Reported: the median samples/s over epochs after the first (compilation and warm-up fall in epoch 1),
the first epoch's time, the wall time, and the last epoch's test error at each evaluation resolution.
`--polar` also times Newton–Schulz (`opspec.optim.polar`) eagerly and under torch.compile on the
FNO per-mode batch (576 × 64×64 complex64), to decide whether compiling it pays on this device.

    python -m tools.bench_precision                                  # fp32, bf16, fp16, ±compile: ~15 min on 2 cores
    python -m tools.bench_precision --variants fp32,bf16 train.epochs=10
    python -m tools.bench_precision --variants none --polar
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opspec.training.runtime import device_name, load_average
from tools.harness import ROOT, alternate, markdown_table, time_interleaved
VARIANTS = {
    "fp32": ["train.precision=fp32"],
    "bf16": ["train.precision=bf16"],
    "fp16": ["train.precision=fp16"],
    "fp32+compile": ["train.precision=fp32", "train.compile=true"],
    "bf16+compile": ["train.precision=bf16", "train.compile=true"],
}


def run_variant(name: str, overrides: list[str], out_dir: Path) -> dict:
    """One training run in a fresh process; its metrics.jsonl and eval.json."""
    cmd = [sys.executable, "-m", "opspec.train", "train.progress=false", f"out_dir={out_dir}", f"run_name={name.replace('+', '_')}",
           *VARIANTS[name], *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "wall": wall}
    run = out_dir / name.replace("+", "_")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    errors = {int(k): v["rel_l2_mean"] for k, v in json.loads((run / "eval.json").read_text()).items()}
    return {"rates": [r["samples_per_second"] for r in records[1:]], "first_epoch": records[0]["epoch_seconds"],
            "errors": errors, "wall": wall}


def polar_timing(repeats: int) -> list[str]:
    """polar eager vs torch.compile(polar) on the FNO per-mode batch, this process's device (CPU)."""
    import torch

    from opspec.optim import polar as polar_module

    G = torch.randn(576, 64, 64, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(polar_module.polar)
    t0 = time.perf_counter()
    compiled(G)
    compile_s = time.perf_counter() - t0
    timed = time_interleaved({"eager": lambda: polar_module.polar(G), "torch.compile": lambda: compiled(G)}, repeats)
    eager = timed["eager"].median
    rows = [f"polar on 576 × 64×64 complex64, default compute dtype {polar_module.default_compute_dtype(G)}, "
            f"{torch.get_num_threads()} threads, {repeats} repeats; compiled in {compile_s:.0f} s", ""]
    table = [(name, f"{1e3 * m.median:.1f}", f"{1e3 * min(m.times):.1f}–{1e3 * max(m.times):.1f}", f"{m.median / eager:.2f}")
             for name, m in timed.items()]
    return rows + markdown_table(("polar", "ms (median)", "min–max", "time / eager"), table).splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}, or none")
    parser.add_argument("--rounds", type=int, default=1, help="runs per variant, alternating")
    parser.add_argument("--polar", action="store_true", help="also time polar eager vs torch.compile")
    parser.add_argument("--polar-repeats", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (default experiment otherwise)")
    args = parser.parse_args()
    variants = [] if args.variants == "none" else args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; expected some of {list(VARIANTS)}")
    print(f"{device_name()}; load average at start {load_average()}; overrides {args.overrides or 'none'}", flush=True)

    def say(r: int, v: str, res: dict) -> None:
        print(f"round {r + 1} {v}: " + (f"error: {res['error']}" if "error" in res else
              f"{statistics.median(res['rates']):.1f} samples/s, errors {res['errors']}, {res['wall']:.0f} s"), flush=True)

    with tempfile.TemporaryDirectory(prefix="opspec_bench_precision_") as tmp:
        results = alternate(variants, args.rounds, lambda r, v: run_variant(v, args.overrides, Path(tmp) / f"round{r}"), say)
    if variants:
        resolutions = sorted({k for rs in results.values() for res in rs for k in res.get("errors", {})})
        header = ["variant", "samples/s (median, epochs 2..)", "min–max", "first epoch s", "wall s",
                  *(f"rel L2 at {k}" for k in resolutions)]
        rows = []
        for v, rs in results.items():
            ok = [res for res in rs if "error" not in res]
            if not ok:
                rows.append([v, f"failed: {rs[0]['error']}", *[""] * (len(header) - 2)])
                continue
            rates = [x for res in ok for x in res["rates"]]
            errs = ["/".join(f"{res['errors'][k]:.5f}" for res in ok) for k in resolutions]
            rows.append([v, f"{statistics.median(rates):.1f}", f"{min(rates):.1f}–{max(rates):.1f}",
                         f"{statistics.median(res['first_epoch'] for res in ok):.1f}",
                         f"{statistics.median(res['wall'] for res in ok):.0f}", *errs])
        print("\n" + markdown_table(header, rows))
    if args.polar:
        print("\n" + "\n".join(polar_timing(args.polar_repeats)))
    print(f"\nload average at end {load_average()}")


if __name__ == "__main__":
    main()
