"""tools/compare_optimizers.py, the front-end to opspec.sweep: the plan (edge extension, confirm seeds,
matched-budget checks), resume, and the tables.

Training is replaced by a synthetic error surface so the plan logic is tested in milliseconds; one
real run (a tiny Darcy FNO) checks the record the real trainer produces.
"""

from __future__ import annotations

import json
import math
import statistics

import pytest
from scipy.stats import t as student_t

from opspec.sweep.stats import matched_budget
from opspec.sweep.trial import TrialContext
from opspec.sweep.records import TrialSpec
from tools import compare_optimizers


@pytest.fixture(scope="module")
def compare():
    return compare_optimizers


def _ci(values: list[float]) -> float:
    return student_t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


# Each optimizer's error is smallest at its own LR; seeds add a small offset.
OPTIMUM = {"adamw": 0.1, "muon": 1e-3}


def _fake_train(calls: list):
    def train_one(ctx, trial):
        optimizer, lr, seed, epochs = trial.optimizer, trial.lr, trial.seed, trial.epochs
        calls.append((optimizer, lr, seed))
        err = 0.01 * (1 + math.log10(lr / OPTIMUM[optimizer]) ** 2) + 1e-4 * seed
        return {"optimizer": optimizer, "lr": lr, "seed": seed, "epochs": epochs, "train_resolution": 16,
                "curve": [2 * err, err], "train_loss": [1.0, 0.5], "final": {"16": err, "32": 1.1 * err},
                "seconds_per_epoch": 0.1, "wall_seconds": 0.2, "run_dir": ctx.sweep_dir}
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
    assert "| 0.081 |" in table["adamw"] and "| 3 | 0.5000 ± 0.0000 |" in table["adamw"]  # 3 seeds, final train loss
    assert "| 0.00081 |" in table["muon"]
    # The table's error is the mean over the three seeds at the best LR, with the 95% Student-t interval.
    errors = [0.01 * (1 + math.log10(0.081 / 0.1) ** 2) + 1e-4 * s for s in range(3)]
    assert f"| {statistics.mean(errors):.4f} ± {_ci(errors):.4f} |" in table["adamw"]
    assert "test (no validation records)" in table["adamw"]

    calls.clear()
    assert compare.main([*argv, "--extend-edges", "3", "--confirm-seeds", "1,2"]) == 0
    assert calls == []
    assert len(list((tmp_path / "results").glob("*.json"))) == 8 + 7


def test_a_real_run_record(compare, darcy_file, tmp_path):
    """One real tiny Darcy–FNO run through the Trainer: the record holds what the tables read."""
    from conftest import TINY_OVERRIDES

    ctx = TrialContext(sweep_dir=str(tmp_path), config=None, overrides=[*TINY_OVERRIDES, f"data.path={darcy_file}"])
    record = compare.train_one(ctx, TrialSpec("muon", 0.01, 0, 2))
    assert record["optimizer"] == "muon" and record["seed"] == 0 and record["epochs"] == 2
    assert len(record["curve"]) == 2 and all(math.isfinite(v) for v in record["curve"])
    assert str(record["train_resolution"]) in record["final"]
    json.dumps(record)


def test_matched_budget_interpolates_in_log_log():
    # A power law error = 0.006 / b is a straight line in log-log: it reaches 0.01 at b = 0.6 exactly.
    b, rel = matched_budget([1, 0.5, 0.25], [0.006, 0.012, 0.024], 0.01)
    assert rel == "=" and b == pytest.approx(0.6, rel=1e-12)
    # Exactly on the target at a swept budget; below it everywhere; above it everywhere.
    assert matched_budget([1, 0.5, 0.25], [0.008, 0.01, 0.02], 0.01) == (0.5, "=")
    assert matched_budget([1, 0.5, 0.25], [0.002, 0.004, 0.008], 0.01) == (0.25, "≤")
    assert matched_budget([1, 0.5, 0.25], [0.02, 0.04, 0.08], 0.01) == (None, ">")
    # Not monotone: the smallest budget that reaches the target counts, bracketed by the next smaller one.
    b, _ = matched_budget([1, 0.5, 0.25], [0.005, 0.02, 0.009], 0.01)
    assert b == 0.25


# Error = A / b at each budget's own optimal LR, which doubles as the budget halves; seeds add -1e-4, 0, +1e-4.
AMPLITUDE = {"adamw": 0.01, "muon": 0.006, "adam_p0": 0.002, "momentum_p1": 0.00995}
SECONDS = {"adamw": 0.1, "muon": 0.15, "adam_p0": 0.2, "momentum_p1": 0.1}


def _fake_budget_train(calls: list, full_epochs: int):
    def train_one(ctx, trial):
        optimizer, lr, seed, epochs = trial.optimizer, trial.lr, trial.seed, trial.epochs
        calls.append((optimizer, lr, seed, epochs))
        b = epochs / full_epochs
        err = AMPLITUDE[optimizer] / b * (1 + math.log10(lr / (0.01 / b)) ** 2) + 1e-4 * (seed - 1)
        return {"optimizer": optimizer, "lr": lr, "seed": seed, "epochs": epochs, "train_resolution": 16,
                "curve": [2 * err, err], "train_loss": [1.0, 0.5], "final": {"16": err, "32": 1.1 * err},
                "seconds_per_epoch": SECONDS[optimizer], "wall_seconds": 0.2, "run_dir": ctx.sweep_dir}
    return train_one


def test_budgets_resweep_the_lr_and_find_the_matching_budget(compare, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(compare, "train_one", _fake_budget_train(calls, 8))
    argv = ["darcy", "fno", "--optimizers", "adamw,muon,adam_p0,momentum_p1", "--epochs", "8", "--seeds", "0",
            "--confirm-seeds", "1,2", "--lr-factors", "0.5,1,2", "--budget-lr-factors", "0.5,1,2",
            "--extend-edges", "1", "--budgets", "1,0.5,0.25", "--base-lr", "adamw=0.01", "--out", str(tmp_path)]
    assert compare.main(argv) == 0
    # Each smaller budget's sweep is centred on the previous best (0.01, then 0.02) and finds the new optimum.
    # Muon's matched budget 0.6 of 8 epochs is 4.8: confirmed by every seed at 5 epochs, at the LR selected
    # at the nearest swept budget (4 epochs: 0.02).
    muon = sorted({(lr, e) for o, lr, s, e in calls if o == "muon" and s == 0})
    assert muon == sorted([(0.005, 8), (0.01, 8), (0.02, 8), (0.005, 4), (0.01, 4), (0.02, 4), (0.04, 4),
                           (0.01, 2), (0.02, 2), (0.04, 2), (0.08, 2), (0.02, 5)])
    assert {(lr, s) for o, lr, s, e in calls if o == "muon" and e == 2 and s > 0} == {(0.04, 1), (0.04, 2)}
    assert sorted((o, lr, s) for o, lr, s, e in calls if e == 5) == [("muon", 0.02, s) for s in range(3)]

    rows = {line.split(" | ")[0].strip("| "): line.strip("|").split(" | ")
            for line in (tmp_path / "budgets.md").read_text().splitlines() if line.startswith("| ") and "---" not in line}
    header = rows.pop("optimizer")
    col = {name.strip(): i for i, name in enumerate(header)}
    assert [rows["muon"][col[f"lr @ {b}"]] for b in ("1", "0.5", "0.25")] == ["0.01", "0.02", "0.04"]
    # With one extension adam_p0's sweeps all end inside their grids; without any, 0.5's best sits at the top.
    assert "(edge)" not in "".join(rows["adam_p0"])
    # Seed-mean errors are exactly 0.006 / b against AdamW's 0.01: the match is b = 0.6.
    assert rows["muon"][col["rel L2 @ 0.5"]] == f"0.0120 ± {_ci([0.0119, 0.012, 0.0121]):.4f}"
    assert rows["muon"][col["budget to AdamW's full error"]] == "0.60"
    # The check at 5 epochs (b = 5/8) at LR 0.02, off that budget's optimum 0.016: still below AdamW's 0.01.
    check = 0.006 / (5 / 8) * (1 + math.log10(0.02 / (0.01 / (5 / 8))) ** 2)
    assert rows["muon"][col["confirmed at"]] == "5 epochs (0.62)"
    assert rows["muon"][col["confirmed rel L2"]] == f"{check:.4f} ± {_ci([check - 1e-4, check, check + 1e-4]):.4f}"
    assert rows["muon"][col["reaches the target"]].strip() == "yes"
    assert rows["adam_p0"][col["confirmed at"]] == "—"
    low, high = (float(v) for v in rows["muon"][col["per seed"]].split("–"))
    assert 0.5 < low < 0.6 < high < 1
    assert rows["muon"][col["s / epoch vs AdamW"]] == "1.50"
    assert rows["muon"][col["wall-clock vs AdamW's full run"]].strip() == "0.90"
    # 0.002 / 0.25 = 0.008 already beats 0.01 at the smallest budget; AdamW itself matches at 1.
    assert rows["adam_p0"][col["budget to AdamW's full error"]] == "≤ 0.25"
    assert rows["adam_p0"][col["per seed"]] == "≤ 0.25–≤ 0.25"
    assert rows["adamw"][col["per seed"]] == "(the target)"
    # Seed mean 0.00995 matches just below the full budget; seed 2 (0.01005) never does.
    assert rows["momentum_p1"][col["budget to AdamW's full error"]] == "0.99"
    assert rows["momentum_p1"][col["per seed"]] == "1 of 3 seeds > 1"
    assert rows["adam_p0"][col["wall-clock vs AdamW's full run"]].strip() == "≤ 0.50"
    assert rows["adamw"][col["budget to AdamW's full error"]] == "1.00"
    assert (tmp_path / "budgets.png").stat().st_size > 0 and (tmp_path / "budget_0.5" / "summary.md").exists()

    # An epoch cost measured elsewhere replaces the runs' own ratio; nothing retrains.
    calls.clear()
    assert compare.main([*argv, "--epoch-cost", "muon=1.2"]) == 0
    assert calls == []
    assert "| 0.72 |" in (tmp_path / "budgets.md").read_text()
    edged = tmp_path / "edged"
    assert compare.main([*argv[:-1], str(edged), "--extend-edges", "0"]) == 0
    muon_row = next(line for line in (edged / "budgets.md").read_text().splitlines() if line.startswith("| muon"))
    assert "| 0.01 | 0.02 (edge) | 0.04 (edge) |" in muon_row


def test_budgets_need_the_full_budget_and_adamw(compare, tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare.main(["darcy", "fno", "--budgets", "0.5,0.25", "--out", str(tmp_path)])
    assert "including 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare.main(["darcy", "fno", "--optimizers", "muon", "--budgets", "1,0.5", "--out", str(tmp_path)])


def test_budgets_count_the_epochs_actually_trained(compare, tmp_path, monkeypatch):
    """15 epochs at budgets 0.5 and 0.25 train 8 and 4 epochs: the match uses 8/15 and 4/15, not 0.5 and 0.25."""
    calls: list = []
    monkeypatch.setattr(compare, "train_one", _fake_budget_train(calls, 15))
    assert compare.main(["darcy", "fno", "--optimizers", "adamw,muon", "--epochs", "15", "--seeds", "0",
                         "--lr-factors", "0.5,1,2", "--budget-lr-factors", "0.5,1,2", "--budgets", "1,0.5,0.25",
                         "--base-lr", "adamw=0.01", "--out", str(tmp_path)]) == 0
    assert sorted({e for *_, e in calls}) == [4, 8, 9, 15]  # 9: Muon's matched budget 0.6 of 15, confirmed
    text = (tmp_path / "budgets.md").read_text()
    assert "| lr @ 1 | lr @ 0.533 | lr @ 0.267 |" in text and "8 (0.533)" in text
    muon = next(line for line in text.splitlines() if line.startswith("| muon"))
    # Seed 0's errors 0.006·15/epochs − 1e-4 against AdamW's 0.0099: solved exactly in log-log between 8/15 and 1.
    e_lo, e_hi, target = 0.006 * 15 / 8 - 1e-4, 0.006 - 1e-4, 0.01 - 1e-4
    t = math.log(e_lo / target) / math.log(e_lo / e_hi)
    assert f"| {math.exp(math.log(8 / 15) + t * math.log(15 / 8)):.2f} |" in muon


def test_budget_table_keeps_the_old_columns(compare, tmp_path, monkeypatch):
    """On the same runs (one seed), the budget table's old columns are cell for cell what the old
    compare_optimizers (tests/compare_oracle.py) made; the new columns follow them."""
    import compare_oracle

    from opspec.sweep.runner import records

    monkeypatch.setattr(compare, "train_one", _fake_budget_train([], 8))
    optimizers = ["adamw", "muon", "adam_p0", "momentum_p1"]
    assert compare.main(["darcy", "fno", "--optimizers", ",".join(optimizers), "--epochs", "8", "--seeds", "0",
                         "--lr-factors", "0.5,1,2", "--budget-lr-factors", "0.5,1,2", "--extend-edges", "1",
                         "--budgets", "1,0.5,0.25", "--base-lr", "adamw=0.01", "--no-confirm-budget",
                         "--out", str(tmp_path / "new")]) == 0
    runs = records(tmp_path / "new")
    by_budget = {b: [r for r in runs if r["epochs"] == round(8 * b)] for b in (1, 0.5, 0.25)}
    (tmp_path / "old").mkdir()
    compare_oracle.summarize_budgets(by_budget, optimizers, [0], tmp_path / "old", "oracle", {})

    def table(path):
        return {cells[0]: cells for cells in ([c.strip() for c in line.strip().strip("|").split("|")]
                                              for line in path.read_text().splitlines()
                                              if line.startswith("| ") and "---" not in line)}

    old, new = table(tmp_path / "old" / "budgets.md"), table(tmp_path / "new" / "budgets.md")
    assert old.keys() == new.keys() == {"optimizer", *optimizers}
    assert all(new[k][:len(old[k])] == old[k] for k in old)
    assert new["optimizer"][len(old["optimizer"]):] == [
        "train loss @ 1", "train loss @ 0.5", "train loss @ 0.25", "confirmed at", "confirmed rel L2", "reaches the target"]
