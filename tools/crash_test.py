"""Kill training with SIGKILL at random moments, resume each time, and check the run folder (issue 13 §10).

    python -m tools.crash_test --kills 20            # ~20 kills on a tiny Darcy run, then the checks
    python -m tools.crash_test --kills 5 --epochs 4 --seed 1 --keep /tmp/crash

An uninterrupted reference run is trained first. Then one run is started and killed again and again:
half of the kills land as soon as a checkpoint temp file appears (inside `atomic_save`), the others at a
random time after the trainer is up. After every kill the folder must hold only loadable checkpoints,
and `last.pt` at most one epoch away from `metrics.jsonl` (each epoch writes last.pt, best.pt, then its
metrics line; resume restores a missing line from the checkpoint). The run is then resumed with `--resume` (and
killed again), and finally resumed to the end. At the end:

- `metrics.jsonl` has epochs 1..N once each, every line strict JSON, equal to the reference's numbers;
- `last.pt` is epoch N and bitwise equal to the reference's `last.pt` (weights and optimizer state);
- `best.pt` is the epoch with the lowest `test_rel_l2` in `metrics.jsonl`, bitwise equal to the reference's;
- no temp file is left in the folder.

Prints one line per kill and a summary; exits 1 if any check fails. `run_crash_test` is what the
short version in tests/test_crash.py calls.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

# Bigger than the unit tests' tiny model so a checkpoint write lasts long enough to be hit.
OVERRIDES = [
    "model.n_modes=[4,4]", "model.hidden_channels=32", "model.n_layers=3", "train.batch_size=4",
    "train.eval_batch_size=8", "train.progress=false", "data.train_resolution=9", "data.eval_resolutions=[9]",
    "data.generate=false", "optimizer.name=muon", "optimizer.compute_dtype=float32",
]
COMPARED_KEYS = ("epoch", "train_loss", "test_rel_l2", "lr")  # the rest of a metrics line is timing
# torch's LRScheduler bookkeeping that only feeds a warning, not the learning rate
SCHEDULER_BOOKKEEPING = ("_step_count", "_get_lr_called_within_step", "_is_initial")


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def read_metrics(path: Path, tolerate_torn_tail: bool) -> list[dict[str, Any]]:
    """metrics.jsonl as records; a torn last line (a kill mid-append) is skipped when tolerated."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(_strict(line))
        except ValueError:
            if tolerate_torn_tail and i == len(lines) - 1:
                break
            raise
    return records


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) if folder.exists() else []


def same_state(a: Any, b: Any) -> bool:
    """Bitwise equality of nested checkpoint structures (tensors compared exactly)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def check_after_kill(run: Path) -> list[str]:
    """What must hold at any crash point, before resume repairs anything."""
    problems = []
    checkpoints = {}
    for name in ("last.pt", "best.pt"):
        if (run / name).exists():
            try:
                checkpoints[name] = load(run / name)
            except Exception as err:  # noqa: BLE001 - any failure to load is the finding
                problems.append(f"{name} does not load: {type(err).__name__}: {err}")
    try:
        records = read_metrics(run / "metrics.jsonl", tolerate_torn_tail=True)
    except ValueError as err:
        return problems + [f"metrics.jsonl: a line before the last is not JSON ({err})"]
    epochs = [r["epoch"] for r in records]
    if epochs != list(range(1, len(epochs) + 1)):
        problems.append(f"metrics.jsonl epochs {epochs}")
    if "last.pt" in checkpoints:
        last = int(checkpoints["last.pt"]["epoch"])
        if not last - 1 <= len(epochs) <= last + 1:  # the line is written after the checkpoints (or, before, ahead)
            problems.append(f"last.pt at epoch {last} but metrics.jsonl has {len(epochs)} lines")
        if "best.pt" in checkpoints and int(checkpoints["best.pt"]["epoch"]) > last:
            problems.append(f"best.pt epoch {checkpoints['best.pt']['epoch']} is after last.pt's {last}")
    return problems


def check_final(run: Path, reference: Path, epochs: int) -> list[str]:
    """The finished run against the uninterrupted reference."""
    problems = []
    records = read_metrics(run / "metrics.jsonl", tolerate_torn_tail=False)
    expected = read_metrics(reference / "metrics.jsonl", tolerate_torn_tail=False)
    if [r["epoch"] for r in records] != list(range(1, epochs + 1)):
        problems.append(f"metrics.jsonl epochs {[r['epoch'] for r in records]}, expected 1..{epochs}")
    else:
        for r, e in zip(records, expected):
            a = {k: r.get(k) for k in COMPARED_KEYS}
            b = {k: e.get(k) for k in COMPARED_KEYS}
            if a != b:
                problems.append(f"metrics epoch {r['epoch']}: {a} != reference {b}")
    last, ref_last = load(run / "last.pt"), load(reference / "last.pt")
    if int(last["epoch"]) != epochs:
        problems.append(f"last.pt epoch {last['epoch']}, expected {epochs}")
    strip = {"scheduler": lambda d: {k: v for k, v in d.items() if k not in SCHEDULER_BOOKKEEPING}}
    for key in ("model", "optimizer", "scheduler"):
        keep = strip.get(key, lambda d: d)
        if not same_state(keep(last[key]), keep(ref_last[key])):
            problems.append(f"last.pt {key} differs from the uninterrupted run's")
    if records:
        best_epoch = min(records, key=lambda r: r.get("val_rel_l2", r["test_rel_l2"]))["epoch"]  # validation, else test
        if not (run / "best.pt").exists():
            problems.append(f"best.pt missing (best epoch in metrics.jsonl: {best_epoch})")
        else:
            best = load(run / "best.pt")
            if int(best["epoch"]) != best_epoch:
                problems.append(f"best.pt is epoch {best['epoch']}, metrics.jsonl's best is epoch {best_epoch}")
            elif not same_state(best["model"], load(reference / "best.pt")["model"]):
                problems.append("best.pt weights differ from the uninterrupted run's best.pt")
    left = temp_files(run)
    if left:
        problems.append(f"temp files left: {left}")
    return problems


@dataclass
class Report:
    kills: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Runner:
    """Starts `python -m opspec.train` in `work` and waits for it to be up."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
        self.count = 0

    def start(self, args: list[str]) -> tuple[subprocess.Popen, Path]:
        self.count += 1
        log = self.work / f"log_{self.count}.txt"
        fh = log.open("w")
        proc = subprocess.Popen([sys.executable, "-m", "opspec.train", *args], cwd=self.work, stdout=fh,
                                stderr=subprocess.STDOUT, env=self.env)
        fh.close()
        return proc, log

    @staticmethod
    def wait_until_up(proc: subprocess.Popen, log: Path, timeout: float = 300) -> bool:
        """True once the trainer printed its run folder (it holds the folder); False if it ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "run folder:" in log.read_text():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.02)
        raise TimeoutError(f"the trainer did not start within {timeout} s: {log.read_text()[-500:]}")


def kill_at_a_checkpoint_write(proc: subprocess.Popen, run: Path, rng: random.Random) -> str:
    """SIGKILL as soon as a checkpoint temp file appears (plus 0–3 ms), or when the run ends; the first
    `last.pt` write is let through (a kill there leaves nothing to resume), the first `best.pt` is not."""
    while proc.poll() is None:
        tmp = [n for n in os.listdir(run) if n.endswith(".tmp")] if run.exists() else []
        tmp = [n for n in tmp if n.startswith(".best.pt") or (run / "last.pt").exists()]
        if tmp:
            time.sleep(rng.uniform(0, 0.003))
            proc.send_signal(signal.SIGKILL)
            return f"inside a write ({tmp[0]})"
        time.sleep(0.0005)
    return "run ended first"


def kill_at_random(proc: subprocess.Popen, epoch_seconds: float, rng: random.Random) -> str:
    delay = rng.uniform(0, 2.5 * epoch_seconds)
    try:
        proc.wait(timeout=delay)
        return "run ended first"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        return f"at random ({delay:.2f} s after start-up)"


def run_crash_test(work: Path, kills: int = 20, epochs: int = 6, seed: int = 0,
                   say: Callable[[str], None] = print) -> Report:
    """The whole test in `work` (data file, reference run, crashed run); returns what was seen."""
    from opspec.data.generate import generate_dataset

    started = time.perf_counter()
    rng = random.Random(seed)
    report = Report()
    work.mkdir(parents=True, exist_ok=True)
    data = work / "darcy17.h5"
    if not data.exists():
        generate_dataset("darcy", data, resolution=17, n_train=12, n_test=6, seed=3, progress=False)
    base = [*OVERRIDES, f"data.path={data}", f"out_dir={work}", f"train.epochs={epochs}"]
    runner = Runner(work)

    say(f"reference: {epochs} epochs uninterrupted")
    t0 = time.perf_counter()
    proc, log = runner.start([*base, "run_name=reference"])
    if proc.wait() != 0:
        raise RuntimeError(f"the reference run failed: {log.read_text()[-1000:]}")
    reference = work / "reference"
    epoch_seconds = max(0.05, (time.perf_counter() - t0) / (epochs + 1))

    run = work / "crashed"
    fresh = True
    for k in range(1, kills + 1):
        if fresh:
            proc, log = runner.start([*base, "run_name=crashed"])
        else:
            proc, log = runner.start(["--resume", str(run)])
        if not runner.wait_until_up(proc, log):
            code = proc.wait()
            if code == 0 and not fresh:
                say(f"kill {k}/{kills}: the resumed run finished before it could be killed")
                fresh = False
                break
            report.problems.append(f"kill {k}: the trainer exited {code} before starting: {log.read_text()[-400:]}")
            break
        how = kill_at_a_checkpoint_write(proc, run, rng) if k % 2 else kill_at_random(proc, epoch_seconds, rng)
        code = proc.wait()
        problems = check_after_kill(run)
        last = load(run / "last.pt")["epoch"] if (run / "last.pt").exists() else None
        best = load(run / "best.pt")["epoch"] if (run / "best.pt").exists() else None
        lines = len(read_metrics(run / "metrics.jsonl", tolerate_torn_tail=True))
        line = (f"kill {k}/{kills} {how}: exit {code}; last.pt epoch {last}, best.pt epoch {best}, metrics {lines} lines, "
                f"temp files {temp_files(run)}" + (f"; PROBLEMS {problems}" if problems else ""))
        say(line)
        report.kills.append(line)
        report.problems += [f"kill {k}: {p}" for p in problems]
        if code == 0:  # it finished: start over with a fresh run so later kills still land mid-run
            shutil.rmtree(run)
            fresh = True
        elif last is None:  # killed before the first checkpoint: nothing to resume, start again
            shutil.rmtree(run)
            fresh = True
        else:
            fresh = False

    if fresh:
        proc, log = runner.start([*base, "run_name=crashed"])
    else:
        proc, log = runner.start(["--resume", str(run)])
    code = proc.wait()
    if code != 0:
        report.problems.append(f"the final run exited {code}: {log.read_text()[-600:]}")
    else:
        report.problems += check_final(run, reference, epochs)
    report.seconds = time.perf_counter() - started
    say(f"{len(report.kills)} kills in {report.seconds:.0f} s; " +
        ("all checks pass" if not report.problems else f"{len(report.problems)} problems:"))
    for p in report.problems:
        say(f"  - {p}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs before the final resume (default 20)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the run (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--keep", help="work folder to keep (default: a temp folder, removed at the end)")
    args = parser.parse_args(argv)
    if args.kills < 0 or args.epochs < 1:
        parser.error("--kills must be >= 0 and --epochs >= 1")
    if args.keep:
        report = run_crash_test(Path(args.keep), args.kills, args.epochs, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="opspec_crash_") as tmp:
            report = run_crash_test(Path(tmp), args.kills, args.epochs, args.seed)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
