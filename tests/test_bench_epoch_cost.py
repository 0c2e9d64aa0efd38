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
