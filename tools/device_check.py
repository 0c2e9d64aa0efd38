"""One short check of opspec's CUDA paths (at most ~8 minutes on one GPU), written as one Markdown file
for docs/RESULTS.md.

Sections, each within its share of the time and reported even when another fails:
1. The CUDA tests: `pytest -k "cuda or gpus"` (tests marked `cuda`, the cuda-parametrized ones, the
   2-GPU NCCL test; they skip without CUDA).
2. tools/bench_optim.py's tables on the device (cases 1-5: opspec Muon vs torch.optim.Muon, the
   grouped FNO step, the optimizer step's share of a training step, Newton–Schulz FLOP rates, the
   complex strategies).
3. Targets (reported, not asserted): Newton–Schulz (`polar`, its default compute dtype) on the FNO
   per-mode batch, 576 × 64×64 complex, against the measured bf16 matmul peak (target ≥ 50%), also
   under torch.compile; Muon's optimizer step as a share of a training step of the default
   experiment (target ≤ 10%, from section 4).
4. Throughput of the default experiment (python -m opspec.train's defaults) for AdamW and Muon in
   fp32 and bf16, ~2 minutes in all: samples/s per epoch after a warm-up epoch, and the optimizer
   step's share of the epoch (timed with a device synchronize around each step).
5. Two-GPU NCCL: `torchrun --nproc_per_node=2 -m opspec.train` on the default experiment, where
   there are two GPUs.
6. train.compile=true on section 4's Muon/bf16 variant, when time is left: the first epoch (which
   compiles) and samples/s against eager.

    python -m tools.device_check --out device_check.md     # on a CUDA machine
    python -m tools.device_check --dry-run --out /tmp/device_check.md   # tiny sizes on the CPU (CI)

On a machine without opspec's Python dependencies, carry them as wheels: here,
`python -m tools.device_wheels --dest .whl` (with `.whl/` in .git/info/exclude); there,
`python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:$PWD
python3 -m tools.device_check --out $OUT/device_check.md`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from opspec.core.fileio import atomic_write_text
from opspec.training.runtime import device_name, load_average
from tools import bench_optim
from tools.harness import ROOT, markdown_table, time_interleaved

NS_TARGET, MUON_SHARE_TARGET = 0.50, 0.10


@dataclass
class Plan:
    """Sizes and time shares: the real check, or the dry run's tiny stand-ins."""

    dry: bool
    device: torch.device
    budget_s: float
    test_paths: list[str]
    bench_cases: tuple[int, ...]
    bench_repeats: int
    peak_size: int
    ns_batch: tuple[int, int, int]
    ns_repeats: int
    compile_polar: bool
    throughput_s: float
    experiment: list[str] = field(default_factory=list)  # overrides of the default experiment
    nccl_epochs: int = 3


def make_plan(dry: bool, budget_s: float, workdir: Path) -> Plan:
    if not dry:
        return Plan(dry=False, device=torch.device("cuda"), budget_s=budget_s, test_paths=["tests"],
                    bench_cases=(1, 2, 3, 4, 5), bench_repeats=10, peak_size=8192, ns_batch=(576, 64, 64),
                    ns_repeats=20, compile_polar=True, throughput_s=120.0)
    from opspec.data.generate import generate_dataset

    data = workdir / "darcy17.h5"
    generate_dataset("darcy", data, resolution=17, n_train=12, n_test=6, seed=3, progress=False)
    tiny = ["model.n_modes=[4,4]", "model.hidden_channels=8", "model.n_layers=2", "train.batch_size=4",
            "data.train_resolution=9", "data.eval_resolutions=[9]", "data.generate=false", f"data.path={data}"]
    return Plan(dry=True, device=torch.device("cpu"), budget_s=budget_s, test_paths=["tests/test_precision.py"],
                bench_cases=(1, 3), bench_repeats=1, peak_size=256, ns_batch=(8, 16, 16), ns_repeats=2,
                compile_polar=False, throughput_s=4.0, experiment=tiny, nccl_epochs=1)


class Report:
    """The Markdown file, section by section, and whether every section ran."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.lines: list[str] = []
        self.failed: list[str] = []
        self.targets: list[tuple[str, str, str]] = []  # (target, measured, met)
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.plan.budget_s - (time.perf_counter() - self.start)

    def section(self, title: str, fn: Callable[[], list[str]], needs_s: float = 0.0) -> None:
        t0 = time.perf_counter()
        if self.left() < needs_s:
            body = [f"Skipped: {self.left():.0f} s of the {self.plan.budget_s:.0f} s budget left, this section needs ~{needs_s:.0f} s."]
        else:
            try:
                body = fn()
            except Exception as err:  # one broken section must not cost the others
                self.failed.append(title)
                body = [f"**Failed**: `{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}`",
                        "", "```", *traceback.format_exc().strip().splitlines()[-12:], "```"]
        self.lines += ["", f"## {title}  ({time.perf_counter() - t0:.0f} s)", "", *body]
        print(f"[device_check] {title}: {time.perf_counter() - t0:.0f} s", flush=True)

    def text(self) -> str:
        plan = self.plan
        gpus = torch.cuda.device_count()
        head = [
            "# Device check (`tools/device_check.py" + (" --dry-run`)" if plan.dry else "`)"),
            "",
            *(["**Dry run: tiny sizes on the CPU, to test the script; the numbers mean nothing.**", ""] if plan.dry else []),
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; commit {_git_commit()}",
            f"- device: {device_name(plan.device)}; CUDA devices: {gpus}"
            + (f"; CUDA {torch.version.cuda}" if torch.version.cuda else ""),
            f"- torch {torch.__version__}; Python {sys.version.split()[0]}; load average {load_average()}",
            f"- total {time.perf_counter() - self.start:.0f} s (budget {plan.budget_s:.0f} s)"
            + (f"; sections that failed: {', '.join(self.failed)}" if self.failed else "; every section ran"),
            "",
            "## Targets (reported, not asserted)",
            "",
            *markdown_table(("target", "measured", "met"), self.targets or [("(no target measured)", "", "")]).splitlines(),
        ]
        return "\n".join(head + self.lines) + "\n"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return (out.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _env() -> dict[str, str]:
    """This environment with the repository on PYTHONPATH (subprocesses import opspec from it)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def _fence(text: str, last: int = 40) -> list[str]:
    lines = text.strip().splitlines()
    return ["```", *lines[-last:], "```"]


# ---------------------------------------------------------------------------------------------
# 1. the CUDA tests


def section_tests(plan: Plan, report: Report) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "cuda or gpus", *plan.test_paths]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=max(60.0, report.left() - 240))
    ok = proc.returncode in (0, 5)  # 5: nothing selected
    if not ok:
        report.failed.append("CUDA tests")
    summary = next((ln for ln in reversed(proc.stdout.strip().splitlines()) if re.search(r"passed|failed|skipped|error|no tests", ln)), "")
    shown = " ".join(["python", *cmd[1:]]).replace("-k cuda or gpus", '-k "cuda or gpus"')
    return [f"Command: `{shown}` → exit {proc.returncode}: **{summary.strip('= ')}**", "",
            *_fence(proc.stdout + ("\n" + proc.stderr if proc.returncode not in (0, 5) else ""))]


# ---------------------------------------------------------------------------------------------
# 2. bench_optim's tables


def tiny_fno(device: torch.device) -> torch.nn.Module:
    """The dry run's stand-in for bench_optim's FNO."""
    from neuralop.models import FNO

    torch.manual_seed(0)
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1).to(device)


def section_bench_optim(plan: Plan) -> list[str]:
    bench = bench_optim
    real, build = (((4, 16),), tiny_fno) if plan.dry else (bench.REAL_CASES, bench.make_fno)  # tiny stand-ins when dry
    cases: dict[int, tuple[str, Callable[[], list[str]]]] = {
        1: ("Real 2-D parameters: opspec Muon vs torch.optim.Muon", lambda: bench.case_real(plan.device, plan.bench_repeats, None, real)),
        2: ("FNO spectral weights: grouped batched step vs per-mode loop",
            lambda: bench.case_fno_spectral(plan.device, plan.bench_repeats, build)),
        3: ("Optimizer step as a share of an FNO training step (batch 16, 64×64, MSE)",
            lambda: bench.case_fno_training(plan.device, plan.bench_repeats, build)),
        4: ("Newton–Schulz FLOP rate of polar vs the large-matmul rate",
            lambda: bench.case_flop_rates(plan.device, plan.bench_repeats, real)),
        5: ("Complex strategies, 576 × 64×64 complex64", lambda: bench.case_complex_strategies(plan.device, plan.bench_repeats)),
    }
    lines = [f"`tools/bench_optim.py` cases {', '.join(map(str, plan.bench_cases))} on {plan.device}, "
             f"{plan.bench_repeats} repeats (the same functions as `python -m tools.bench_optim --device {plan.device.type} "
             f"--repeats {plan.bench_repeats}`)."]
    for k in plan.bench_cases:
        title, fn = cases[k]
        t0 = time.perf_counter()
        try:
            body = fn()
        except Exception as err:
            body = [f"failed: `{type(err).__name__}: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}`"]
        lines += ["", f"### {k}. {title}  ({time.perf_counter() - t0:.0f} s)", "", *body]
    return lines


# ---------------------------------------------------------------------------------------------
# 3. the Newton–Schulz target


def _median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """The median seconds of `repeats` calls after `warmup` (harness.time_interleaved, device synchronized)."""
    return time_interleaved({"fn": fn}, repeats, warmup)["fn"].median


def section_newton_schulz(plan: Plan, report: Report) -> list[str]:
    from opspec.optim import polar as polar_fn

    polar_module = sys.modules["opspec.optim.polar"]
    batch, m, n = plan.ns_batch
    device = plan.device
    g = torch.Generator(device="cpu").manual_seed(5)
    G = torch.randn(batch, m, n, dtype=torch.complex64, generator=g).to(device)
    peak = bench_optim.matmul_rate(device, torch.bfloat16, max(3, plan.ns_repeats // 4), size=plan.peak_size)
    rows = []
    shares = {}
    variants: list[tuple[str, torch.dtype, Callable[[], Any]]] = []
    default = polar_module.default_compute_dtype(G)
    variants.append(("eager, default dtype", default, lambda: polar_fn(G)))
    if default != torch.float32:
        variants.append(("eager, float32", torch.float32, lambda: polar_fn(G, compute_dtype=torch.float32)))
    if plan.compile_polar:
        compiled = torch.compile(polar_fn)
        variants.append(("torch.compile, default dtype", default, lambda: compiled(G)))
    for name, dtype, fn in variants:
        t0 = time.perf_counter()
        if name.startswith("torch.compile"):
            fn()  # compile outside the timing
            name += f" (compiled in {time.perf_counter() - t0:.0f} s)"
        t = _median_seconds(fn, plan.ns_repeats)
        flops = bench_optim.polar_flops(batch, m, n, True, dtype)
        shares[name] = flops / t / peak
        path = polar_module.complex_path(dtype)
        rows.append((name, str(dtype).removeprefix("torch."), path, f"{1e3 * t:.2f}", f"{flops / 1e9:.1f}",
                     f"{flops / t / 1e12:.1f}", f"{100 * shares[name]:.0f}%"))
    best = max(shares, key=shares.get)
    report.targets.append((f"Newton–Schulz, {batch} × {m}×{n} complex, ≥ {NS_TARGET:.0%} of the bf16 matmul peak "
                           f"({peak / 1e12:.0f} TFLOP/s, {plan.peak_size}² matmul)", f"{100 * shares[best]:.0f}% ({best})",
                           "yes" if shares[best] >= NS_TARGET else "no"))
    table = markdown_table(("polar on", "compute dtype", "path", "ms (median)", "GFLOP", "TFLOP/s", "share of bf16 peak"), rows)
    return [f"bf16 matmul peak measured: {peak / 1e12:.1f} TFLOP/s ({plan.peak_size}×{plan.peak_size} bf16 matmul). "
            f"FLOPs are real FLOPs of 5 quintic steps along the path taken (bench_optim.polar_flops).", "", *table.splitlines()]


# ---------------------------------------------------------------------------------------------
# 4. throughput of the default experiment


VARIANTS = (("adamw", "fp32"), ("adamw", "bf16"), ("muon", "fp32"), ("muon", "bf16"))


def _measure(plan: Plan, overrides: list[str], seconds: float, run_dir: Path) -> dict[str, Any]:
    """Whole epochs of one configuration for about `seconds` after a first (warm-up) epoch: samples/s
    and the optimizer step's share of each later epoch, and the first epoch's seconds."""
    from tqdm import tqdm

    from opspec.training.config import load_config
    from opspec.training.trainer import Trainer

    # sync_timing: synchronize around optimizer.step on CUDA, so it can be timed
    trainer = Trainer(load_config(overrides=overrides + ["train.epochs=1000"]), run_dir=run_dir, sync_timing=True)
    rates, shares, first = [], [], 0.0
    start, epoch = time.perf_counter(), 0
    while epoch < 2 or time.perf_counter() - start < seconds + first:
        epoch += 1
        record = trainer.train_epoch(epoch, tqdm(disable=True))
        if epoch == 1:  # allocations, cuBLAS/cuFFT plans, autotuning, compilation
            first = record["epoch_seconds"]
        else:
            rates.append(record["samples_per_second"])
            shares.append(record["optimizer_share"])
    trainer.close()
    return {"rate": statistics.median(rates), "min": min(rates), "max": max(rates), "share": statistics.median(shares),
            "epochs": len(rates), "first": first}


def section_throughput(plan: Plan, report: Report, results: dict[str, dict[str, Any]]) -> list[str]:
    from opspec.training.config import load_config
    from opspec.training.trainer import ensure_data

    base = ["train.progress=false", f"train.device={plan.device.type}", *plan.experiment]
    cfg0 = load_config(overrides=base)
    t0 = time.perf_counter()
    ensure_data(cfg0, progress=False, device=plan.device)  # the default experiment's file, generated if missing
    prep = time.perf_counter() - t0
    share_s = plan.throughput_s / len(VARIANTS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="opspec_device_check_") as tmp:
        for opt, precision in VARIANTS:
            extra = [f"optimizer.name={opt}", f"train.precision={precision}"] + (["optimizer.lr=3e-3"] if opt == "adamw" else [])
            r = results[f"{opt}/{precision}"] = _measure(plan, base + extra, share_s, Path(tmp) / f"{opt}_{precision}")
            rows.append((opt, precision, f"{r['rate']:.0f}", f"{r['min']:.0f}–{r['max']:.0f}", f"{100 * r['share']:.1f}%",
                         r["epochs"], f"{r['first']:.1f}"))
    for key, r in results.items():
        if key.startswith("muon/"):
            report.targets.append((f"Muon's step ≤ {MUON_SHARE_TARGET:.0%} of a training step of the default experiment "
                                   f"({key.split('/')[1]})", f"{100 * r['share']:.1f}%",
                                   "yes" if r["share"] <= MUON_SHARE_TARGET else "no"))
    table = markdown_table(("optimizer", "precision", "samples/s (median)", "min–max", "optimizer step share (median)",
                            "epochs timed", "first epoch s"), rows)
    overrides = " ".join(base[1:])
    return [f"Default experiment (`load_config()` with `{overrides}`), batch {cfg0.train.batch_size}, "
            f"{cfg0.data.n_train} training samples at {cfg0.data.train_resolution}; ~{share_s:.0f} s per variant after a "
            f"warm-up epoch (data ready in {prep:.0f} s). The optimizer share is the time of `optimizer.step` (device "
            "synchronized before and after) over the epoch's time.", "", *table.splitlines()]


def section_compile(plan: Plan, results: dict[str, dict[str, Any]]) -> list[str]:
    """train.compile=true on the Muon/bf16 variant of section 4: compile time and samples/s against eager."""
    base = ["train.progress=false", f"train.device={plan.device.type}", *plan.experiment,
            "optimizer.name=muon", "train.precision=bf16"]
    with tempfile.TemporaryDirectory(prefix="opspec_device_check_compile_") as tmp:
        r = _measure(plan, base + ["train.compile=true"], plan.throughput_s / len(VARIANTS), Path(tmp) / "compiled")
    eager = results.get("muon/bf16")
    rows = [("train.compile=true", f"{r['rate']:.0f}", f"{r['min']:.0f}–{r['max']:.0f}", f"{r['first']:.1f}", r["epochs"])]
    if eager:
        rows.append(("eager (section 4)", f"{eager['rate']:.0f}", f"{eager['min']:.0f}–{eager['max']:.0f}",
                     f"{eager['first']:.1f}", eager["epochs"]))
    lines = markdown_table(("muon, bf16", "samples/s (median)", "min–max", "first epoch s (compiles)", "epochs timed"),
                           rows).splitlines()
    if eager:
        lines += ["", f"compiled / eager samples/s: {r['rate'] / eager['rate']:.2f}"]
    return lines


# ---------------------------------------------------------------------------------------------
# 5. two GPUs


def section_nccl(plan: Plan, report: Report) -> list[str]:
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return [f"Skipped: {gpus} CUDA device(s); needs 2."]
    torchrun = shutil.which("torchrun")
    launcher = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    with tempfile.TemporaryDirectory(prefix="opspec_nccl_") as tmp:
        cmd = [*launcher, "--standalone", "--nproc_per_node=2", "-m", "opspec.train", "train.progress=false",
               "train.device=cuda", f"train.epochs={plan.nccl_epochs}", f"out_dir={tmp}", *plan.experiment]
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=max(60.0, report.left() - 10))
    if proc.returncode != 0:
        report.failed.append("two-GPU NCCL")
    shown = [ln for ln in proc.stdout.splitlines() if "samples/s" in ln or "rel L2" in ln or re.match(r"\s+\d", ln)]
    return [f"Command: `torchrun --standalone --nproc_per_node=2 -m opspec.train {' '.join(cmd[cmd.index('opspec.train') + 1:])}` "
            f"→ exit {proc.returncode}", "", *_fence("\n".join(shown) if proc.returncode == 0 else proc.stdout + proc.stderr)]


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="device_check.md", help="the Markdown file to write")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (tests the script; numbers mean nothing)")
    parser.add_argument("--budget", type=float, default=None, help="seconds in all (default 470; dry run 120)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device; use --dry-run to test the script on the CPU", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="opspec_device_check_data_") as work:
        plan = make_plan(args.dry_run, args.budget or (120.0 if args.dry_run else 470.0), Path(work))
        report = Report(plan)
        results: dict[str, dict[str, Any]] = {}
        report.section("1. CUDA tests", lambda: section_tests(plan, report), needs_s=60)
        report.section("2. bench_optim on the device", lambda: section_bench_optim(plan), needs_s=60 + 0.3 * plan.throughput_s)
        report.section("3. Newton–Schulz against the bf16 matmul peak", lambda: section_newton_schulz(plan, report),
                       needs_s=0.2 * plan.throughput_s)
        report.section("4. Throughput of the default experiment: AdamW and Muon, fp32 and bf16",
                       lambda: section_throughput(plan, report, results), needs_s=plan.throughput_s + 0.3 * plan.throughput_s)
        report.section("5. Two-GPU NCCL", lambda: section_nccl(plan, report), needs_s=0.2 * plan.throughput_s)
        report.section("6. train.compile on the default experiment (Muon, bf16)",
                       (lambda: ["Skipped in the dry run: compiling the FNO takes minutes on a CPU."]) if plan.dry
                       else (lambda: section_compile(plan, results)), needs_s=0.25 * plan.throughput_s + 100)
    atomic_write_text(args.out, report.text())
    print(f"wrote {args.out}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
