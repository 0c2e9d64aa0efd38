"""The validation split (opspec/data/holdout.py): held-out indices fixed by (n, fraction, seed), a
dataset over them, best.pt chosen on validation, normalizers fit on the training part, and run
folders written before the split existed resuming as they ran."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from opspec.core.errors import OpspecError
from opspec.data import OperatorDataset, fit_normalizer
from opspec.data.holdout import holdout, validation_of
from opspec.training.checkpoint import best_of, load_checkpoint
from opspec.training.config import load_config
from opspec.training.evaluate import evaluate_model
from opspec.training.evaluate import main as evaluate_main
from opspec.training.trainer import Trainer
from opspec.training.trainer import main as train_main
from conftest import StopAfter, stop_after


def test_holdout_is_disjoint_complete_and_fixed_by_seed_alone():
    train, val = holdout(10, 0.3, 0)
    assert val.tolist() == [1, 2, 3] and train.tolist() == [0, 4, 5, 6, 7, 8, 9]  # PCG64(0)'s raw order, pinned
    for n, fraction, seed in [(12, 0.1, 0), (500, 0.1, 0), (500, 0.25, 7), (3, 0.5, 2)]:
        train, val = holdout(n, fraction, seed)
        assert len(val) == max(1, round(fraction * n)) and not set(train) & set(val)
        assert sorted([*train, *val]) == list(range(n)) and list(val) == sorted(val)
        again = holdout(n, fraction, seed)
        assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    assert not np.array_equal(holdout(500, 0.1, 0)[1], holdout(500, 0.1, 1)[1])
    assert set(holdout(500, 0.1, 3)[1]) < set(holdout(500, 0.2, 3)[1])  # a larger fraction holds out a superset


def test_holdout_and_validation_refuse_bad_fractions_and_prefer_the_files_valid_split():
    with pytest.raises(OpspecError, match=r"data.val_fraction=0.5 holds out 1 of 1"):
        holdout(1, 0.5, 0)
    with pytest.raises(OpspecError, match=r"data.val_fraction=1"):
        holdout(10, 1, 0)
    assert validation_of(("train", "test"), 10, 0.0, 0) is None
    own = validation_of(("train", "valid", "test"), 10, 0.1, 0)
    assert own.split == "valid" and own.indices is None and own.train_indices is None
    with pytest.raises(OpspecError, match=r"data.val_fraction=1.5"):
        load_config(overrides=["data.val_fraction=1.5"])


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_dataset_over_indices_holds_those_samples(darcy_file, in_memory):
    full = OperatorDataset(darcy_file, "train", 9)
    train, val = holdout(len(full), 0.25, 5)
    part = OperatorDataset(darcy_file, "train", 9, in_memory=in_memory, indices=train)
    assert len(part) == len(train)
    a, u = part[list(range(len(part)))]
    assert torch.equal(a, full[train.tolist()][0]) and torch.equal(u, full[train.tolist()][1])
    assert torch.equal(part[2][0], full[int(train[2])][0])
    assert sum(hi - lo for lo, hi in part.blocks()) == len(part)
    with pytest.raises(ValueError, match="indices"):
        OperatorDataset(darcy_file, "train", 9, indices=[3, 1])


def test_best_of_picks_the_lowest_validation_error_not_test():
    records = [{"epoch": 1, "test_rel_l2": 0.5, "val_rel_l2": 0.4}, {"epoch": 2, "test_rel_l2": 0.2, "val_rel_l2": 0.45},
               {"epoch": 3, "test_rel_l2": 0.3, "val_rel_l2": 0.3}, {"epoch": 4, "test_rel_l2": 0.1, "val_rel_l2": 0.35}]
    assert best_of(records) == (0.3, 3)
    assert best_of([{k: v for k, v in r.items() if k != "val_rel_l2"} for r in records]) == (0.1, 4)  # no validation


def test_training_records_validation_and_chooses_best_pt_on_it(tiny_overrides, tmp_path, monkeypatch):
    cfg = load_config(overrides=tiny_overrides + ["data.val_fraction=0.25", "optimizer.name=adamw"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    train_idx, val_idx = holdout(12, 0.25, cfg.data.seed)
    assert len(trainer.train_data) == 9 and np.array_equal(trainer.validation.indices, val_idx)
    norm = fit_normalizer(OperatorDataset(cfg.data.path, "train", 9, indices=train_idx), "u")
    assert torch.equal(trainer.net.out_norm.mean, norm.mean) and torch.equal(trainer.net.out_norm.std, norm.std)
    real = Trainer.validation_error
    made_up = iter([0.5, 0.2, 0.4])  # epoch 2 is the best on validation, whatever the test error says
    seen: list[float] = []

    def validation_error(self, epoch):
        seen.append(real(self, epoch))
        return next(made_up)

    monkeypatch.setattr(Trainer, "validation_error", validation_error)
    trainer.fit()
    trainer.close()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_rel_l2"] for r in records] == [0.5, 0.2, 0.4]
    assert load_checkpoint(tmp_path / "run", prefer="best")["epoch"] == 2 == trainer.best_epoch
    # the real validation error is the mean relative L2 on the held-out train samples
    held_out = evaluate_model(trainer.net, trainer.file, [9], split="train", indices=val_idx)[9]["rel_l2_mean"]
    assert seen[-1] == pytest.approx(held_out, rel=1e-6)


def _make_old(run: Path) -> None:
    """Strip a run folder's checkpoints and config.yaml of the keys runs written before the validation split lack."""
    for name in ("last.pt", "best.pt"):
        payload = torch.load(run / name, weights_only=True)
        del payload["config"]["train"]["schedule_unit"], payload["config"]["data"]["val_fraction"]
        torch.save(payload, run / name)
    lines = (run / "config.yaml").read_text().splitlines()
    (run / "config.yaml").write_text("\n".join(x for x in lines if "schedule_unit" not in x and "val_fraction" not in x))


def test_a_run_folder_written_before_resumes_as_it_ran_and_evaluates(tiny_overrides, tmp_path, capsys):
    old = ["data.val_fraction=0", "train.schedule_unit=epoch", "optimizer.name=adamw", "train.epochs=2"]
    cfg = load_config(overrides=tiny_overrides + old)
    full = Trainer(cfg, run_dir=tmp_path / "full")
    full.fit()
    full.close()
    stopped = Trainer(cfg, run_dir=tmp_path / "old", callbacks=[stop_after(1)])
    with pytest.raises(StopAfter):
        stopped.fit()
    stopped.close()
    _make_old(tmp_path / "old")
    assert train_main(["--resume", str(tmp_path / "old")]) == 0
    out = capsys.readouterr().out
    assert "chosen on the TEST error" in out
    a, b = torch.load(tmp_path / "full" / "last.pt", weights_only=True), torch.load(tmp_path / "old" / "last.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert evaluate_main([str(tmp_path / "old"), "--resolutions", "9"]) == 0


def test_a_file_with_its_own_valid_split_validates_on_it_and_trains_on_all_of_train(tmp_path):
    from test_well import NX, NY, write_pdearena
    from opspec.data.convert import convert

    shards = tmp_path / "ns"
    shards.mkdir()
    for split, seed in (("train", 1), ("train", 2), ("valid", 3), ("test", 4)):
        write_pdearena(shards / f"NavierStokes2D_{split}_{seed}_0.5_2.h5", split, seed=seed)
    path = convert(shards, tmp_path / "ns.h5", problem="navier_stokes", t_in=2, t_out=1)
    cfg = load_config(overrides=[f"data.path={path}", "data.problem=navier_stokes", "data.generate=false",
                                 f"data.train_resolution=[{NX},{NY}]", f"data.eval_resolutions=[[{NX},{NY}]]",
                                 "model.n_modes=[4,4]", "model.hidden_channels=4", "model.n_layers=1",
                                 "train.progress=false", f"out_dir={tmp_path / 'runs'}"])
    trainer = Trainer(cfg)
    assert trainer.validation.split == "valid" and trainer.validation.indices is None and len(trainer.train_data) == 4
    expected = evaluate_model(trainer.net, trainer.file, [[NX, NY]], split="valid")[f"{NX}x{NY}"]["rel_l2_mean"]
    assert trainer.validation_error(1) == pytest.approx(expected, rel=1e-6)
    trainer.close()
