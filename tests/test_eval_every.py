"""train.eval_every: the Trainer tests, checkpoints and records every N epochs and at the last; the
epochs between are only trained, a resume from last.pt (which can be behind the trained epoch)
still ends bitwise equal to an uninterrupted run, and a tool's given validation samples are used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from opspec.core.errors import OpspecError
from opspec.data import OperatorDataset
from opspec.data.holdout import Validation
from opspec.training.callbacks import Callback, DivergedError
from opspec.training.checkpoint import load_checkpoint
from opspec.training.config import load_config
from opspec.training.metrics import relative_l2
from opspec.training.trainer import RESUME_NEUTRAL, Trainer, main as train_main


class Crash(BaseException):
    """A kill after an epoch's training (BaseException: no handler catches it)."""


class Epochs(Callback):
    """The epochs whose training ended and those that were evaluated (on_epoch_end); crashes after `crash`."""

    def __init__(self, crash: int = 0) -> None:
        self.trained: list[int] = []
        self.evaluated: list[int] = []
        self.crash = crash

    def on_train_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.trained.append(trainer.global_step // trainer.steps_per_epoch)
        if self.trained[-1] == self.crash:
            raise Crash

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.evaluated.append(record["epoch"])


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}


def test_eval_every_defaults_to_1_and_is_checked_in_one_line():
    assert load_config().train.eval_every == 1
    assert "train.eval_every" in RESUME_NEUTRAL
    for bad in ("0", "-2"):
        with pytest.raises(OpspecError, match=rf"^override 'train.eval_every={bad}': train.eval_every={bad}, "
                                              r"expected an integer >= 1$"):
            load_config(overrides=[f"train.eval_every={bad}"])
    with pytest.raises(OpspecError, match=r"train\.eval_every"):
        load_config(overrides=["train.eval_every=1.5"])


def test_every_n_epochs_and_the_last_are_evaluated_and_saved(tiny_overrides, tmp_path):
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=5", "train.eval_every=2"])
    seen = Epochs()
    trainer = Trainer(cfg, run_dir=tmp_path / "run", callbacks=[seen])
    history = trainer.fit()
    assert seen.trained == [1, 2, 3, 4, 5] and seen.evaluated == [2, 4, 5]
    assert [r["epoch"] for r in history] == [2, 4, 5] == [r["epoch"] for r in _records(tmp_path / "run")]
    assert all("test_rel_l2" in r and "val_rel_l2" in r for r in history)
    assert trainer.epoch == trainer.saved_epoch == 5
    assert load_checkpoint(tmp_path / "run")["epoch"] == 5


@pytest.mark.parametrize("optimizer", ["muon", "specmuon"])
def test_a_crash_between_evaluations_resumes_from_last_pt_to_the_uninterrupted_weights(tiny_overrides, tmp_path, optimizer):
    """Killed after training epoch 5 of 6 (last.pt holds epoch 4): the resume replays epoch 5."""
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=6", "train.eval_every=2", f"optimizer.name={optimizer}"])
    full = Trainer(cfg, run_dir=tmp_path / "full")
    full.fit()
    crashed = Trainer(cfg, run_dir=tmp_path / "crashed", callbacks=[Epochs(crash=5)])
    with pytest.raises(Crash):
        crashed.fit()
    assert crashed.epoch == 4 and crashed.saved_epoch == 4  # epoch 5 was trained, not completed
    payload = load_checkpoint(tmp_path / "crashed")
    assert payload["epoch"] == 4
    resumed = Trainer(load_config(base=payload["config"]), resume=payload)
    assert resumed.epoch == resumed.saved_epoch == 4
    resumed.fit()
    a, b = _weights(full.net), _weights(resumed.net)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    keys = ("epoch", "train_loss", "lr", "test_rel_l2", "val_rel_l2")
    mine, theirs = _records(tmp_path / "crashed"), _records(tmp_path / "full")
    assert [[r[k] for k in keys] for r in mine] == [[r[k] for k in keys] for r in theirs]
    assert [r["epoch"] for r in mine] == [2, 4, 6]


def test_the_cli_resumes_4_epochs_to_6_as_one_run_of_6(tiny_overrides, tmp_path):
    """Constant LR (the schedule does not depend on train.epochs): 4 epochs, then --resume to 6, equals 6."""
    overrides = tiny_overrides + ["train.scheduler=none", "train.eval_every=2"]
    out = Path(next(o for o in tiny_overrides if o.startswith("out_dir=")).split("=", 1)[1])
    assert train_main(overrides + ["train.epochs=6", "run_name=full"]) == 0
    assert train_main(overrides + ["train.epochs=4", "run_name=part"]) == 0
    assert [r["epoch"] for r in _records(out / "part")] == [2, 4]
    assert train_main(["--resume", str(out / "part"), "train.epochs=6"]) == 0
    assert [r["epoch"] for r in _records(out / "part")] == [2, 4, 6]
    a, b = load_checkpoint(out / "full")["model"], load_checkpoint(out / "part")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resume_may_change_eval_every(tiny_overrides, tmp_path):
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=4", "train.eval_every=2"])
    with pytest.raises(Crash):
        Trainer(cfg, run_dir=tmp_path / "run", callbacks=[Epochs(crash=3)]).fit()
    payload = load_checkpoint(tmp_path / "run")
    resumed = Trainer(load_config(overrides=["train.eval_every=1"], base=payload["config"]), resume=payload)
    assert [r["epoch"] for r in resumed.fit()] == [3, 4]


def test_a_run_that_diverges_before_its_first_checkpoint_says_so_and_is_discarded(tiny_overrides, tmp_path):
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=6", "train.eval_every=3", "optimizer.lr=1e-3"])

    class Poison(Callback):
        def on_train_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
            if trainer.global_step == trainer.steps_per_epoch:  # after epoch 1
                with torch.no_grad():
                    next(trainer.net.model.parameters()).fill_(float("nan"))

    trainer = Trainer(cfg, run_dir=tmp_path / "out" / "run", callbacks=[Poison()])
    with pytest.raises(DivergedError, match=r"^epoch 2, step 1: the training loss is nan .*no checkpoint was saved yet$"):
        trainer.fit()
    assert trainer.epoch == 1 and trainer.saved_epoch == 0
    assert trainer.discard() is True and not (tmp_path / "out").exists()


def test_a_tool_gives_its_validation_samples(tiny_overrides, darcy_file, tmp_path):
    """datasets=(the first 8 train samples, test) and validation = the last 4: val_rel_l2 is their error."""
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=2", "train.eval_every=2"])
    train = OperatorDataset(darcy_file, "train", 9, n=8)
    test = OperatorDataset(darcy_file, "test", 9)
    held = Validation("train", np.arange(8, 12), np.arange(8))
    trainer = Trainer(cfg, run_dir=tmp_path / "run", datasets=(train, test), validation=held)
    (record,) = trainer.fit()
    a, u = OperatorDataset(darcy_file, "train", 9)[torch.arange(8, 12)]
    with torch.no_grad():
        expected = float(relative_l2(trainer.net(a), u).double().mean())
    assert record["val_rel_l2"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="validation"):
        Trainer(cfg, run_dir=tmp_path / "other", validation=held)
