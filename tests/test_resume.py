"""--resume semantics (README "Resume"): overrides honoured or refused, and the run folder repaired after a crash
between the writes of an epoch (last.pt, then best.pt, then the metrics line)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import opspec.training.trainer
from opspec.training.checkpoint import load_checkpoint
from opspec.training.config import load_config
from opspec.core.errors import OpspecError
from opspec.training.trainer import Trainer
from conftest import TINY_OVERRIDES

FAST = ["optimizer.name=adamw", "train.scheduler=cosine"]


@pytest.fixture(scope="module")
def two_epoch_run(darcy_file, tmp_path_factory) -> Path:
    """A finished 2-epoch run folder; tests take copies."""
    run = tmp_path_factory.mktemp("shared") / "run"
    cfg = load_config(overrides=[*TINY_OVERRIDES, f"data.path={darcy_file}", *FAST, "train.epochs=2"])
    trainer = Trainer(cfg, run_dir=run)
    trainer.fit()
    trainer.close()
    return run


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


class Kill(BaseException):
    """Stands for SIGKILL at a chosen point: nothing after it runs (BaseException: no handler catches it)."""


def _records(run: Path) -> list[dict]:
    return [json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_more_epochs_and_a_new_lr_are_both_honoured(tiny_overrides, tmp_path):
    """One cosine epoch of 2 at lr 1e-2, then resumed to 4 epochs at lr 1e-5: every later step has the LR
    a fresh 4-epoch run at 1e-5 uses there (never the old 1e-2's); a record's lr is its epoch's last step's."""
    cfg = load_config(overrides=tiny_overrides + FAST + ["train.epochs=2", "optimizer.lr=1e-2"])
    stop = lambda trainer, record: (_ for _ in ()).throw(Kill())  # noqa: E731  (killed after epoch 1)
    with pytest.raises(Kill):
        Trainer(cfg, run_dir=tmp_path / "run", callbacks=[stop]).fit()
    payload = load_checkpoint(tmp_path / "run")
    new = load_config(overrides=["train.epochs=4", "optimizer.lr=1e-5"], base=payload["config"])
    resumed = Trainer(new, resume=payload)
    assert any("rebuilt" in note and "epoch 2 starts at lr" in note for note in resumed.notes), resumed.notes
    resumed.fit()
    lrs = [r["lr"] for r in _records(tmp_path / "run")]
    n = resumed.steps_per_epoch
    assert lrs[0] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * (n - 1) / (2 * n))), rel=1e-12)
    assert lrs[1:] == pytest.approx([1e-5 * 0.5 * (1 + math.cos(math.pi * (e * n - 1) / (4 * n))) for e in (2, 3, 4)], rel=1e-12)
    assert resumed.optimizer.param_groups[0]["lr"] == 0.0  # cosine to zero, after the last step
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.train.epochs == 4 and saved.optimizer.lr == pytest.approx(1e-5)
    assert load_checkpoint(tmp_path / "run")["config"]["optimizer"]["lr"] == pytest.approx(1e-5)


@pytest.mark.parametrize("override, key", [
    ("model.hidden_channels=16", "model.hidden_channels=16"),
    ("train.batch_size=3", "train.batch_size=3"),
    ("seed=7", "seed=7"),
    ("train.epochs=1", "train.epochs=1, but the run has finished epoch 2"),
])
def test_an_override_that_changes_the_run_is_refused_and_nothing_is_written(override, key, two_epoch_run, tmp_path):
    _copy(two_epoch_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    payload = load_checkpoint(tmp_path / "run")
    with pytest.raises(OpspecError, match=key.replace("[", r"\[")):
        Trainer(load_config(overrides=[override], base=payload["config"]), resume=payload)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


@pytest.mark.parametrize("kill_at", ["after_last", "after_best"])
def test_a_kill_between_the_writes_of_an_epoch_is_repaired_on_resume(kill_at, tiny_overrides, tmp_path, monkeypatch):
    """Epoch 1 always improves on nothing: a kill after its last.pt (before best.pt) left best.pt
    absent for ever before; a kill after best.pt (before the metrics line) lost the line. Resume
    puts both back, and the run still ends bitwise equal to an uninterrupted one."""
    cfg = load_config(overrides=tiny_overrides + FAST + ["train.epochs=2"])
    Trainer(cfg, run_dir=tmp_path / "full").fit()

    name = {"after_last": "atomic_copy", "after_best": "append_metrics"}[kill_at]
    real = getattr(opspec.training.trainer, name)

    def killed(*args, **kwargs):
        raise Kill

    monkeypatch.setattr(opspec.training.trainer, name, killed)
    with pytest.raises(Kill):
        Trainer(cfg, run_dir=tmp_path / "run").fit()
    monkeypatch.setattr(opspec.training.trainer, name, real)
    run = tmp_path / "run"
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and _records(run) == []
    assert (run / "best.pt").exists() == (kill_at == "after_best")

    resumed = Trainer(load_config(base=load_checkpoint(run)["config"]), resume=load_checkpoint(run))
    assert load_checkpoint(run / "best.pt")["epoch"] == 1  # repaired before training goes on
    assert [r["epoch"] for r in _records(run)] == [1]
    resumed.fit()

    records = _records(run)
    exact = ("epoch", "train_loss", "lr", "test_rel_l2")  # the rest are timings
    assert [{k: r[k] for k in exact} for r in records] == [{k: r[k] for k in exact} for r in _records(tmp_path / "full")]
    best_epoch = min(records, key=lambda r: r["test_rel_l2"])["epoch"]
    assert load_checkpoint(run / "best.pt")["epoch"] == best_epoch
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(run / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_torn_last_metrics_line_does_not_block_resume(two_epoch_run, tmp_path):
    run = _copy(two_epoch_run, tmp_path / "run")
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"epoch": 3, "train_lo')  # a write cut short by a kill
    payload = load_checkpoint(run)
    resumed = Trainer(load_config(overrides=["train.epochs=3"], base=payload["config"]), resume=payload)
    assert [r["epoch"] for r in _records(run)] == [1, 2]
    resumed.fit()
    assert [r["epoch"] for r in _records(run)] == [1, 2, 3]
