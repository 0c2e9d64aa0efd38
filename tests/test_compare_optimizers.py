"""tools/compare_optimizers.py: the sweep plan (edge extension, confirm seeds), resume, and the tables.

Training is replaced by a synthetic error surface so the plan logic is tested in milliseconds; one
real run (a tiny Darcy FNO) checks the record the real trainer produces.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_optimizers", TOOLS / "compare_optimizers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_optimizers"] = module
    spec.loader.exec_module(module)
    return module


# Each optimizer's error is smallest at its own LR; seeds add a small offset.
OPTIMUM = {"adamw": 0.1, "muon": 1e-3}


def _fake_train(calls: list):
    def train_one(config, overrides, optimizer, lr, seed, epochs, out):
        calls.append((optimizer, lr, seed))
        err = 0.01 * (1 + math.log10(lr / OPTIMUM[optimizer]) ** 2) + 1e-4 * seed
        return {"optimizer": optimizer, "lr": lr, "seed": seed, "epochs": epochs, "train_resolution": 16,
                "curve": [2 * err, err], "train_loss": [1.0, 0.5], "final": {"16": err, "32": 1.1 * err},
                "seconds_per_epoch": 0.1, "wall_seconds": 0.2, "run_dir": str(out)}
    return train_one


def test_sweep_extends_past_edges_and_confirms_at_the_best_lr(compare, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(compare, "train_one", _fake_train(calls))
    argv = ["darcy", "fno", "--optimizers", "adamw,muon", "--epochs", "2", "--seeds", "0",
            "--lr-factors", "0.3,1,3", "--base-lr", "muon=0.009", "--out", str(tmp_path)]

    def rows() -> dict[str, str]:
        lines = (tmp_path / "summary.md").read_text().split("LR sweep")[0].splitlines()
        return {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith(("| adamw", "| muon"))}

    # One extension each: AdamW's best moves up to 0.027, Muon's down to 0.00081 (by 0.009 / 0.0027); both still at an edge.
    assert compare.main([*argv, "--extend-edges", "1"]) == 0
    assert sorted(lr for o, lr, s in calls if o == "adamw") == [0.0009, 0.003, 0.009, 0.027]
    assert sorted(lr for o, lr, s in calls if o == "muon") == [0.00081, 0.0027, 0.009, 0.027]
    assert "| 0.027 (edge) |" in rows()["adamw"] and "| 0.00081 (edge) |" in rows()["muon"]

    # Resumed with three extensions and two confirm seeds: only the new runs train.
    calls.clear()
    assert compare.main([*argv, "--extend-edges", "3", "--confirm-seeds", "1,2"]) == 0
    assert sorted(calls) == [("adamw", 0.081, 0), ("adamw", 0.081, 1), ("adamw", 0.081, 2), ("adamw", 0.243, 0),
                             ("muon", 0.000243, 0), ("muon", 0.00081, 1), ("muon", 0.00081, 2)]
    table = rows()
    assert "| 0.081 |" in table["adamw"] and table["adamw"].endswith("| 3 |")
    assert "| 0.00081 |" in table["muon"]
    # The table's error is the mean over the three seeds at the best LR, with the half-range.
    mean = 0.01 * (1 + math.log10(0.081 / 0.1) ** 2) + 1e-4
    assert f"| {mean:.4f} ± 0.0001 |" in table["adamw"]

    calls.clear()
    assert compare.main([*argv, "--extend-edges", "3", "--confirm-seeds", "1,2"]) == 0
    assert calls == []
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 8 + 7


def test_a_real_run_record(compare, darcy_file, tmp_path):
    """One real tiny Darcy–FNO run through the Trainer: the record holds what the tables read."""
    from conftest import TINY_OVERRIDES

    record = compare.train_one(None, [*TINY_OVERRIDES, f"data.path={darcy_file}"], "muon", 0.01, 0, 2,
                               tmp_path / "out")
    assert record["optimizer"] == "muon" and record["seed"] == 0 and record["epochs"] == 2
    assert len(record["curve"]) == 2 and all(math.isfinite(v) for v in record["curve"])
    assert str(record["train_resolution"]) in record["final"]
    json.dumps(record)
