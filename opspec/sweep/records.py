"""The sweep's results: one JSON record per finished trial, read from the trial's run folder.

A record is what the analysis reads: optimizer, lr, seed, epochs, the per-epoch test (and, where the
run has one, validation) curves, the training loss, the final errors at every evaluation resolution,
seconds per epoch and the trial's wall-clock. `results/<key>.json` exists only for a finished trial,
which is how a resumed sweep knows never to train it again.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from opspec.core.fileio import atomic_write_json


@dataclass(frozen=True)
class TrialSpec:
    """One trial: an optimizer at one LR, seed and epoch count; `role` says why the plan wants it."""

    optimizer: str
    lr: float
    seed: int
    epochs: int
    role: str = "sweep"  # sweep | confirm (a confirm seed at a selected LR) | budget (a matched-budget check)

    @property
    def key(self) -> str:
        """The trial's name: its run folder, results file and Ray trial name."""
        return f"{self.optimizer}_lr{self.lr:.6g}_s{self.seed}_e{self.epochs}"

    def as_dict(self) -> dict[str, Any]:
        """The trial as plain data (Ray's param space, the record's fields)."""
        return {"optimizer": self.optimizer, "lr": self.lr, "seed": self.seed, "epochs": self.epochs, "role": self.role}


def trial_key(optimizer: str, lr: float, seed: int, epochs: int) -> str:
    """The key of a trial (the role does not change what is trained)."""
    return TrialSpec(optimizer, lr, seed, epochs).key


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a metrics.jsonl (a torn last line is skipped)."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def record_from_run(run_dir: Path, trial: TrialSpec, wall_seconds: float) -> dict[str, Any]:
    """The record of a finished run folder (metrics.jsonl, eval.json, config.yaml)."""
    history = _jsonl(run_dir / "metrics.jsonl")
    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    final = json.loads((run_dir / "eval.json").read_text())
    record: dict[str, Any] = {
        **trial.as_dict(), "key": trial.key,
        "train_resolution": config["data"]["train_resolution"],
        "curve": [h["test_rel_l2"] for h in history],
        "train_loss": [h["train_loss"] for h in history],
        "final": {res: v["rel_l2_mean"] for res, v in final.items()},
        "seconds_per_epoch": statistics.median(h["epoch_seconds"] for h in history),
        "wall_seconds": wall_seconds,
        "run_dir": str(run_dir),
    }
    if history and all("val_rel_l2" in h for h in history):
        record["val_curve"] = [h["val_rel_l2"] for h in history]
    return record


def diverged_record(trial: TrialSpec, message: str, wall_seconds: float) -> dict[str, Any]:
    """The record of a trial whose training diverged: it counts as the worst LR, never as a result."""
    return {**trial.as_dict(), "key": trial.key, "diverged": message, "wall_seconds": wall_seconds}


class ResultStore:
    """`<sweep>/results/<key>.json`, written atomically when a trial finishes."""

    def __init__(self, sweep_dir: Path) -> None:
        self.folder = Path(sweep_dir) / "results"

    def path(self, key: str) -> Path:
        """Where a trial's record lives."""
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """A finished trial's record, or None."""
        path = self.path(key)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, record: dict[str, Any]) -> None:
        """Store a record, atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path(record["key"]), record)

    def load(self) -> dict[str, dict[str, Any]]:
        """Every finished trial's record, by key."""
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json"))} if self.folder.exists() else {}


def import_results_jsonl(path: Path, store: ResultStore) -> int:
    """Adopt the records of an older `results.jsonl` (tools/compare_optimizers before the sweep) as finished
    trials, so their runs are not trained again; the number adopted."""
    adopted = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        if not line.strip():
            continue
        record = json.loads(line)
        key = trial_key(record["optimizer"], record["lr"], record["seed"], record["epochs"])
        if store.get(key) is None:
            store.put({"role": "sweep", **record, "key": key})
            adopted += 1
    return adopted
