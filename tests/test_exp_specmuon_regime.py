"""tools/exp_specmuon_regime.py runs each study run through the Trainer: a tiny study end to end, its
numbers against an independent computation, the optimizer against the one the study asks for, the
study JSON (old caches load), divergence, and no run folder left behind."""

from __future__ import annotations

import json
import math
import tempfile

import pytest
import torch

from opspec.data import OperatorDataset, fit_normalizer
from opspec.models import model_labels
from opspec.optim import build_optimizer
from opspec.training.assemble import build_net, data_meta, optimizer_from_config, seed_everything
from opspec.training.config import load_config
from opspec.training.metrics import relative_l2
from tools import exp_specmuon_regime as regime
from conftest import TINY_OVERRIDES

DEEPONET = ["model.name=deeponet", "model.sensors=9", "model.branch_width=8", "model.trunk_width=8", "model.depth=2",
            "model.basis=4"]


@pytest.fixture()
def cfg(darcy_file, tmp_path):
    return load_config(overrides=[*TINY_OVERRIDES, *DEEPONET, f"data.path={darcy_file}", f"out_dir={tmp_path / 'unused'}"])


@pytest.fixture()
def temp_root(tmp_path, monkeypatch):
    """The temporary folder the runs' folders go in, to see that they are removed."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_the_splits_hold_out_the_last_training_samples(cfg, darcy_file):
    data = regime.load_splits(cfg, 3)
    assert len(data.train) == 9 and len(data.test) == 6
    assert data.validation.split == "train" and data.validation.indices.tolist() == [9, 10, 11]
    a, _ = OperatorDataset(darcy_file, "train", 9)[torch.arange(12)]
    assert torch.equal(data.train[torch.arange(9)][0], a[:9])


STUDY_OPTIONS = [(name, {**regime.BASE_OPTIONS[name], **(regime.SPECMUON_DEFAULTS if name == "specmuon" else {})})
                 for name in ("adam", "adamw", "muon", "specmuon")]


@pytest.mark.parametrize("name, options", STUDY_OPTIONS + [("muon", {}), ("specmuon", {}), ("adamw", {})],
                         ids=lambda x: x if isinstance(x, str) else ",".join(x) or "own defaults")
def test_the_trainer_builds_the_optimizer_the_study_asks_for(darcy_file, tmp_path, name, options):
    """The run's config section builds what build_optimizer(model, name, lr, **options) builds: neither
    the default experiment's values (weight decay 1e-4, AdamW part at 3e-3) nor the config file's."""
    cfg = load_config(overrides=[*TINY_OVERRIDES, *DEEPONET, f"data.path={darcy_file}", "optimizer.momentum=0.5",
                                 "optimizer.ns_steps=3"])
    run = regime.run_config(cfg, name, 3e-4, options, seed=0, iters=5, eval_every=2)
    assert (run.train.batch_size, run.train.scheduler, run.train.epochs, run.train.eval_every) == ("all", "none", 5, 2)
    model = build_net(cfg.model, {"in_channels": 1, "out_channels": 1, "n_space": 2, "grid": "nodal"}).model
    mine = optimizer_from_config(model, run.optimizer)
    theirs = build_optimizer(model, "adamw" if name == "adam" else name, lr=3e-4, labels=model_labels, **options)
    assert type(mine) is type(theirs)
    strip = lambda groups: [{k: v for k, v in g.items() if k != "params"} for g in groups]  # noqa: E731
    assert strip(mine.param_groups) == strip(theirs.param_groups)
    assert mine.defaults == theirs.defaults


def test_a_tiny_study_runs_through_the_trainer_and_its_numbers_are_the_runs(cfg, darcy_file, tmp_path, temp_root):
    """Iteration 1's curve point against an independent computation: the initial model (seed 0,
    normalizers fitted on the first 9 training samples), its full-batch loss there, one AdamW step,
    then its error on the last 3 training samples (val) and on the test split."""
    data = regime.load_splits(cfg, 3)
    out = tmp_path / "study.json"
    study = regime.Study(cfg, data, iters=3, eval_every=1, out=out)
    record = study.run("adam", 1e-2, regime.BASE_OPTIONS["adam"])
    curve = record["curve"]
    assert curve["iter"] == [1, 2, 3] and "diverged" not in curve
    assert 0 < curve["seconds"][0] <= curve["seconds"][1] <= curve["seconds"][2]
    assert record["val"] == curve["val"][-1] and record["test"] == curve["test"][-1]

    a, u = OperatorDataset(darcy_file, "train", 9)[torch.arange(12)]
    a_test, u_test = OperatorDataset(darcy_file, "test", 9)[torch.arange(6)]
    first9 = OperatorDataset(darcy_file, "train", 9, n=9)
    seed_everything(0)
    net = build_net(cfg.model, data_meta(first9.file), first9)
    assert torch.equal(net.out_norm.mean, fit_normalizer(first9, "u").mean)
    step = torch.optim.AdamW(net.model.parameters(), lr=1e-2, weight_decay=0.0)
    loss = relative_l2(net(a[:9]), u[:9]).mean()
    loss.backward()
    step.step()
    with torch.no_grad():
        val, test, first3 = (float(relative_l2(net(x), y).double().mean())
                             for x, y in ((a[9:], u[9:]), (a_test, u_test), (a[:3], u[:3])))
    assert curve["train_loss"][0] == pytest.approx(loss.item(), rel=1e-6)
    assert curve["val"][0] == pytest.approx(val, rel=1e-5) and curve["test"][0] == pytest.approx(test, rel=1e-5)
    assert curve["val"][0] != pytest.approx(first3, rel=1e-3)  # the last 3 training samples, not others

    saved = json.loads(out.read_text())
    assert saved["iters"] == 3 and saved["runs"] == [json.loads(json.dumps(record))]
    assert regime.Study(cfg, data, 3, 1, out).run("adam", 1e-2, regime.BASE_OPTIONS["adam"])["curve"] == curve  # cached
    assert list(temp_root.iterdir()) == []  # each run's folder is removed


def test_the_cadence_gives_the_curve_its_points(cfg, tmp_path, temp_root):
    study = regime.Study(cfg, regime.load_splits(cfg, 3), iters=5, eval_every=2, out=tmp_path / "study.json")
    curve = study.run("muon", 1e-3, regime.BASE_OPTIONS["muon"])["curve"]
    assert curve["iter"] == [2, 4, 5] and all(len(curve[k]) == 3 for k in ("seconds", "train_loss", "val", "test"))
    assert list(temp_root.iterdir()) == []


def test_a_diverging_run_ends_with_val_inf_and_the_study_goes_on(cfg, tmp_path, temp_root):
    study = regime.Study(cfg, regime.load_splits(cfg, 3), iters=4, eval_every=1, out=tmp_path / "study.json")
    record = study.run("muon", 1e30, {**regime.BASE_OPTIONS["muon"], "adamw_lr": 1e30})
    assert record["val"] == math.inf and record["curve"]["diverged"][0] in (1, 2, 3, 4)
    assert len(record["curve"]["iter"]) == record["curve"]["diverged"][0] - 1
    assert json.loads((tmp_path / "study.json").read_text())["runs"][0]["val"] == math.inf
    assert list(temp_root.iterdir()) == []


def test_the_old_study_files_load(cfg, tmp_path):
    """The JSON written by the tool before it ran on the Trainer is still its cache."""
    old = {"iters": 2, "runs": [{"name": "adam", "lr": 1e-3, "options": {"weight_decay": 0.0}, "seed": 0, "val": 0.5,
                                 "test": 0.6, "curve": {"iter": [2], "seconds": [0.1], "train_loss": [0.4], "val": [0.5],
                                                        "test": [0.6]}}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    study = regime.Study(cfg, regime.load_splits(cfg, 3), 2, 1, tmp_path / "old.json")
    assert study.run("adam", 1e-3, {"weight_decay": 0.0}) == old["runs"][0]
