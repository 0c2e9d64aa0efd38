"""tools/bench_epoch_cost.py on a tiny Darcy FNO: the table's medians and ratios follow from the epochs it printed."""

from __future__ import annotations

import statistics

import pytest
from conftest import TINY_OVERRIDES


def test_epoch_cost_table(darcy_file, capsys):
    from tools import bench_epoch_cost as module

    assert module.main(["--settings", "darcy_fno", "--epochs", "3", "--rounds", "2", "--threads", "1",
                        *TINY_OVERRIDES, f"data.path={darcy_file}"]) == 0
    out = capsys.readouterr().out
    timed: dict[str, list[float]] = {"adamw": [], "muon": []}
    order = []
    for line in out.splitlines():
        if line.startswith("darcy_fno ") and " round " in line:
            name = line.split()[1]
            order.append(name)
            secs = [float(s) for s in line.split(":")[1].split()]
            assert len(secs) == 3
            timed[name] += secs[1:]  # the first epoch of each run is warm-up
    assert order == ["adamw", "muon", "muon", "adamw"]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
             if line.startswith("| darcy_fno ")]
    rows = {row[1]: row for row in cells}
    ref = statistics.median(timed["adamw"])
    for name in ("adamw", "muon"):
        med = statistics.median(timed[name])
        assert float(rows[name][2]) == pytest.approx(med, rel=5e-3, abs=2e-4)  # printed with 3 significant digits
        assert float(rows[name][4]) == pytest.approx(med / ref, rel=5e-3, abs=1.5e-3)


def test_against_another_tree(darcy_file, capsys):
    """--against: old and new trees in fresh processes, (tree, optimizer) pairs in ABBA order, each tree's
    ratio to its own first optimizer."""
    from tools import bench_epoch_cost as module
    from tools.harness import ROOT

    assert module.main(["--settings", "darcy_fno", "--epochs", "2", "--rounds", "2", "--against", str(ROOT),
                        *TINY_OVERRIDES, f"data.path={darcy_file}"]) == 0
    out = capsys.readouterr().out
    timed: dict[str, list[float]] = {}
    order = []
    for line in out.splitlines():
        if line.startswith("darcy_fno ") and " round " in line:
            variant = line.split()[1]
            order.append(variant)
            timed.setdefault(variant, []).append(float(line.split(":")[-1].split()[1]))
    pairs = ["old:adamw", "old:muon", "new:adamw", "new:muon"]
    assert order == pairs + pairs[::-1]
    rows = {row[1]: row for row in ([c.strip() for c in line.strip().strip("|").split("|")]
                                    for line in out.splitlines() if line.startswith("| darcy_fno "))}
    for tree in ("old", "new"):
        ref = statistics.median(timed[f"{tree}:adamw"])
        med = statistics.median(timed[f"{tree}:muon"])
        assert float(rows[f"{tree}:muon"][4]) == pytest.approx(med / ref, rel=5e-3, abs=1.5e-3)
        assert float(rows[f"{tree}:adamw"][4]) == 1.0
    for name in ("adamw", "muon"):
        new, old = statistics.median(timed[f"new:{name}"]), statistics.median(timed[f"old:{name}"])
        assert float(rows[f"new:{name}"][5]) == pytest.approx(new / old, rel=5e-3, abs=1.5e-3)
        assert float(rows[f"old:{name}"][5]) == 1.0
