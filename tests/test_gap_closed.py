"""tools/gap_closed.py on a sweep whose runs are made up: the selection is the sweep's (validation) and the
share is (base − variant) / (base − reference) of the seed means."""

from __future__ import annotations

from opspec.sweep.executors import InlineExecutor
from opspec.sweep.runner import run_sweep
from opspec.sweep.spec import build_spec
from opspec.sweep.trial import TrialContext
from tools.gap_closed import gap_rows

# test error by (optimizer, lr, seed); validation picks lr 0.01 for every optimizer (its val is lowest)
TEST = {("specmuon", 0.01): [0.040, 0.044], ("specmuon", 0.02): [0.001, 0.001],
        ("muon", 0.01): [0.020, 0.024], ("muon", 0.02): [0.001, 0.001],
        ("adamw", 0.01): [0.026, 0.030], ("adamw", 0.02): [0.001, 0.001]}


def test_share_of_the_gap_from_the_selected_runs(tmp_path):
    def train(ctx, trial):
        test = TEST[(trial.optimizer, trial.lr)][trial.seed]
        val = 0.5 if trial.lr == 0.01 else 0.9  # the tempting test error at 0.02 is not what validation picks
        return {**trial.as_dict(), "train_resolution": 9, "curve": [test], "val_curve": [val], "train_loss": [0.5],
                "final": {"9": test}, "seconds_per_epoch": 0.1, "wall_seconds": 0.1}

    spec = build_spec({"optimizers": ["specmuon", "adamw", "muon"], "epochs": 1, "extend_edges": 0, "log": "none",
                       "lrs": {name: [0.01, 0.02] for name in ("specmuon", "adamw", "muon")}, "seeds": [0],
                       "confirm_seeds": [1]})
    run_sweep(spec, tmp_path, InlineExecutor(TrialContext(sweep_dir=str(tmp_path), config=None), train), "test")
    (row,) = gap_rows(tmp_path, "specmuon", "adamw", "muon")
    # seed means: specmuon 0.042, adamw 0.028, muon 0.022 → (0.042 − 0.028) / (0.042 − 0.022) = 70%
    assert row == ["9", "0.04200", "0.02800", "0.02200", "2/2/2", "70%"]
