"""One trial: an opspec training run (the `python -m opspec.train` body, in this process), resumed exactly
from its run folder when an earlier attempt left a checkpoint, and recorded when it finishes.

Where a trial's run folder holds `last.pt`, the trial continues it with `--resume` (bitwise as an
uninterrupted run); a folder with no finished epoch is removed and the run starts over; a trial with a
result is returned without training. Every start is one line in `<sweep>/trials.log`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from opspec.sweep.records import ResultStore, TrialSpec, diverged_record, record_from_run


@dataclass
class TrialContext:
    """What every trial of a sweep shares: where it writes, what it trains, how it logs and runs."""

    sweep_dir: str
    config: str | None
    overrides: list[str] = field(default_factory=list)
    variants: dict[str, list[str]] = field(default_factory=dict)  # the spec's named optimizer settings
    experiment: str = "sweep"
    log: str = "none"
    threads: int = 1
    cwd: str = "."

    def as_dict(self) -> dict[str, Any]:
        """The context as plain data (it travels in Ray's param space)."""
        return asdict(self)


def trial_argv(ctx: TrialContext, trial: TrialSpec, run_dir: Path) -> list[str]:
    """The `python -m opspec.train` arguments of a trial: a resume of its folder, or a new run there."""
    carried = ["train.progress=false", f"train.log={ctx.log}", f"train.mlflow_experiment={ctx.experiment}"]
    if (run_dir / "last.pt").exists():
        return ["--resume", str(run_dir), *carried]
    config = ["--config", ctx.config] if ctx.config else []
    optimizer = ctx.variants.get(trial.optimizer, [f"optimizer.name={trial.optimizer}"])
    return [*config, *ctx.overrides, *optimizer, f"optimizer.lr={trial.lr}",
            f"seed={trial.seed}", f"train.epochs={trial.epochs}", f"out_dir={run_dir.parent}", f"run_name={run_dir.name}",
            *carried]


def _note(sweep_dir: Path, event: dict[str, Any]) -> None:
    """Append one event to `<sweep>/trials.log`."""
    with (sweep_dir / "trials.log").open("a") as fh:
        fh.write(json.dumps(event) + "\n")


def run_trial(ctx: TrialContext, trial: TrialSpec) -> dict[str, Any]:
    """Train `trial` (or return its stored result) and store its record."""
    import torch

    from opspec.training.trainer import DivergedError, main as train_main

    sweep_dir = Path(ctx.sweep_dir)
    store = ResultStore(sweep_dir)
    done = store.get(trial.key)
    if done is not None:
        return done
    if Path(ctx.cwd).is_dir():
        os.chdir(ctx.cwd)  # relative paths in the config mean what they mean where the sweep started
    run_dir = sweep_dir / "runs" / trial.key
    resume = (run_dir / "last.pt").exists()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)  # an attempt that finished no epoch: nothing to keep
    _note(sweep_dir, {"event": "start", "key": trial.key, "resume": resume, "pid": os.getpid(), "time": time.time()})
    torch.set_num_threads(ctx.threads)
    started = time.perf_counter()
    try:
        train_main.__wrapped__(trial_argv(ctx, trial, run_dir))  # unwrapped: a divergence arrives as its exception
    except DivergedError as err:
        record = diverged_record(trial, str(err), time.perf_counter() - started)
    else:
        record = record_from_run(run_dir, trial, time.perf_counter() - started)
    store.put(record)
    _note(sweep_dir, {"event": "finish", "key": trial.key, "seconds": record["wall_seconds"], "time": time.time()})
    return record


def trial_starts(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every start event in `<sweep>/trials.log`, in order."""
    path = Path(sweep_dir) / "trials.log"
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [e for e in events if e["event"] == "start"]
