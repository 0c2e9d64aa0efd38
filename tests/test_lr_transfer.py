"""tools/lr_transfer.py: variant overrides, the shared LR grid, and the 'moves by k sweep steps' verdicts.

Training is replaced by a synthetic error surface whose optimum is known per variant."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def transfer():
    from tools import lr_transfer as module

    return module


def test_variant_overrides(transfer):
    assert transfer.variant_overrides("w64") == (
        "w64_r33", ["model.hidden_channels=64", "data.train_resolution=33", "data.eval_resolutions=[33,129]"])
    assert transfer.variant_overrides("r17")[1][:2] == ["model.hidden_channels=32", "data.train_resolution=17"]
    assert transfer.variant_overrides("r33")[0] == transfer.variant_overrides("w32")[0] == "w32_r33"
    with pytest.raises(SystemExit, match="'x3'"):
        transfer.variant_overrides("x3")
    assert transfer.steps_apart([0.01, 0.04, 0.02], 2.0) == pytest.approx(2.0)


# AdamW's optimum moves ×2 per doubling of width or resolution; Muon's stays at 0.02.
def _optimum(optimizer: str, width: int, resolution: int) -> float:
    if optimizer == "muon":
        return 0.02
    return 0.01 * (width / 32) * (resolution / 33)


def test_transfer_table(transfer, tmp_path, monkeypatch):
    from tools import compare_optimizers as compare

    calls = []

    def train_one(config, overrides, optimizer, lr, seed, epochs, out):
        width = int(next(o for o in overrides if o.startswith("model.hidden_channels=")).split("=")[1])
        res = int(next(o for o in overrides if o.startswith("data.train_resolution=")).split("=")[1])
        calls.append((optimizer, lr, width, res))
        err = 0.01 * (1 + math.log2(lr / _optimum(optimizer, width, res)) ** 2)
        return {"optimizer": optimizer, "lr": lr, "seed": seed, "epochs": epochs, "train_resolution": res,
                "curve": [err], "train_loss": [err], "final": {str(res): err, "129": err},
                "seconds_per_epoch": 0.1, "wall_seconds": 0.1, "run_dir": str(out)}

    monkeypatch.setattr(compare, "train_one", train_one)
    argv = ["--variants", "w16,w32,w64,r17,r33", "--epochs", "2", "--base-lr", "adamw=0.01", "--base-lr", "muon=0.02",
            "--out", str(tmp_path)]
    assert transfer.main(argv) == 0
    # r33 is w32: its runs are cached, not repeated.
    assert len(calls) == len(set(calls))
    lines = (tmp_path / "transfer.md").read_text().splitlines()
    rows = {line.split(" | ")[0].strip("| "): [c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("| ") and "---" not in line}
    # w16, w32, w64 (0.005, 0.01, 0.02: 2 steps apart), r17 (≈0.00515 → 0.005 on the grid), r33.
    assert rows["adamw"][1:4] == ["0.005", "0.01", "0.02"]
    assert rows["adamw"][-2:] == ["2.0", "1.0"]
    assert rows["muon"][1:6] == ["0.02"] * 5 and rows["muon"][-2:] == ["0.0", "0.0"]
    assert (tmp_path / "transfer.png").stat().st_size > 0
    calls.clear()
    assert transfer.main([*argv, "--summarize-only"]) == 0 and calls == []
