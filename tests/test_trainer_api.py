"""The Trainer's public per-step API and its hooks: the numbers a callback sees are the run's numbers,
a step through `Trainer.step` is the loop's step, and the assembly builds what the Trainer trains."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

from opspec.data import OperatorDataset
from opspec.training.assemble import assemble, build_net, data_meta
from opspec.training.callbacks import Callback, DivergedError, Step
from opspec.training.checkpoint import load_checkpoint, model_from_checkpoint
from opspec.training.config import load_config
from opspec.training.trainer import Trainer


def _tensors(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}  # not neuralop's _metadata


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    mine, theirs = _tensors(a), _tensors(b)
    assert mine.keys() == theirs.keys()
    for key, value in mine.items():
        assert torch.equal(value, theirs[key]), key


class Recorder(Callback):
    """Every hook call, in order, with the numbers it saw."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.losses: dict[int, list[float]] = {}
        self.samples: dict[int, list[int]] = {}
        self.global_steps: list[int] = []
        self.records: list[dict[str, Any]] = []
        self.lrs: list[float] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        self.calls.append("fit_start")

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.calls.append(f"epoch_start {epoch}")

    def on_step_start(self, trainer: Trainer, step: Step) -> None:
        self.calls.append("step_start")
        assert step.loss is None

    def on_after_backward(self, trainer: Trainer, step: Step) -> None:
        self.calls.append("after_backward")
        assert step.loss is not None and all(p.grad is not None for p in trainer.net.model.parameters())

    def on_before_optimizer_step(self, trainer: Trainer, step: Step) -> None:
        self.calls.append("before_optimizer_step")

    def on_after_optimizer_step(self, trainer: Trainer, step: Step) -> None:
        self.calls.append("after_optimizer_step")

    def on_step_end(self, trainer: Trainer, step: Step) -> None:
        self.calls.append("step_end")
        self.losses.setdefault(step.epoch, []).append(step.loss.item())
        self.samples.setdefault(step.epoch, []).append(step.n_global)
        self.global_steps.append(step.global_step)
        self.lrs.append(step.lr)

    def on_train_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.calls.append("train_epoch_end")

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.calls.append("epoch_end")
        self.records.append(dict(record))

    def on_fit_end(self, trainer: Trainer, history: list[dict[str, Any]]) -> None:
        self.calls.append("fit_end")


def test_the_hooks_see_the_losses_metrics_jsonl_records(tiny_overrides, tmp_path):
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=2", "data.val_fraction=0"])  # all 12 samples train
    recorder = Recorder()
    trainer = Trainer(cfg, run_dir=tmp_path / "run", callbacks=[recorder])
    history = trainer.fit()
    lines = [json.loads(line) for line in trainer.metrics_path.read_text().splitlines()]
    steps = trainer.steps_per_epoch
    assert steps == 3  # 12 samples in batches of 4
    for epoch, line in zip((1, 2), lines):
        losses, samples = recorder.losses[epoch], recorder.samples[epoch]
        assert len(losses) == steps and sum(samples) == 12
        # the record's train_loss is the sample-weighted mean of the per-step global losses (float64 sums)
        weighted = torch.tensor(losses, dtype=torch.float32).double() @ torch.tensor(samples, dtype=torch.float64)
        assert line["train_loss"] == pytest.approx(float(weighted) / 12, rel=1e-12)
        assert line["lr"] == recorder.lrs[epoch * steps - 1]
    assert recorder.records == history == lines
    assert recorder.global_steps == list(range(1, 2 * steps + 1))
    one_step = ["step_start", "after_backward", "before_optimizer_step", "after_optimizer_step", "step_end"]
    epoch = lambda k: [f"epoch_start {k}", *one_step * steps, "train_epoch_end", "epoch_end"]  # noqa: E731
    assert recorder.calls == ["fit_start", *epoch(1), *epoch(2), "fit_end"]
    assert all(0 <= line["optimizer_share"] < 1 for line in lines)  # the built-in timer's key, on the CPU


def test_step_by_the_public_api_equals_the_loops_step(tiny_overrides, tmp_path):
    """An epoch driven by `step` over `batches(1)` ends with the weights, state and LR that
    `train_epoch(1)` gives: the same math, in the same order, with the same RNG draws."""
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=2", "optimizer.name=specmuon", "data.val_fraction=0"])
    looped = Trainer(cfg, run_dir=tmp_path / "looped")
    record = looped.train_epoch(1)
    stepped = Trainer(cfg, run_dir=tmp_path / "stepped")
    stepped.net.train()
    losses = [stepped.step(batch, 1, index).item() for index, batch in enumerate(stepped.batches(1), 1)]
    _same_weights(looped.net, stepped.net)
    assert [g["lr"] for g in looped.optimizer.param_groups] == [g["lr"] for g in stepped.optimizer.param_groups]
    assert stepped.global_step == looped.global_step == stepped.steps_per_epoch
    assert record["train_loss"] == pytest.approx(sum(loss * 4 for loss in losses) / 12, rel=1e-6)


def test_should_stop_ends_the_run_after_the_step_without_recording_the_epoch(tiny_overrides, tmp_path):
    class StopAt(Callback):
        def on_step_end(self, trainer: Trainer, step: Step) -> None:
            if step.global_step == 2:
                trainer.should_stop = True

    trainer = Trainer(load_config(overrides=tiny_overrides), run_dir=tmp_path / "run", callbacks=[StopAt()])
    assert trainer.fit() == []
    assert trainer.global_step == 2 and trainer.epoch == 0
    assert trainer.metrics_path.read_text() == "" and not (tmp_path / "run" / "last.pt").exists()


def test_a_plain_function_is_an_epoch_end_callback(tiny_overrides, tmp_path):
    seen = []
    trainer = Trainer(load_config(overrides=tiny_overrides + ["train.epochs=2"]), run_dir=tmp_path / "run",
                      callbacks=[lambda t, record: seen.append((t.epoch, record["epoch"]))])
    trainer.fit()
    assert seen == [(1, 1), (2, 2)]


def test_the_finiteness_check_is_a_hook_that_stops_before_the_optimizer(tiny_overrides, tmp_path):
    class Poison(Callback):
        def on_step_start(self, trainer: Trainer, step: Step) -> None:
            if step.global_step == 2:
                step.a[0, 0, 0, 0] = math.nan  # the batch on the device: the forward pass sees it

    applied = []

    class Applied(Callback):
        def on_after_optimizer_step(self, trainer: Trainer, step: Step) -> None:
            applied.append(step.global_step)

    trainer = Trainer(load_config(overrides=tiny_overrides), run_dir=tmp_path / "run", callbacks=[Poison(), Applied()])
    with pytest.raises(DivergedError, match=r"^epoch 1, step 2: the training loss is nan \(the batch holds NaN"):
        trainer.fit()
    assert applied == [1]


def test_sync_timing_is_a_parameter(tiny_overrides, tmp_path):
    cfg = load_config(overrides=tiny_overrides)
    assert Trainer(cfg, run_dir=tmp_path / "a").sync_timing is False  # train.log=none
    assert Trainer(cfg, run_dir=tmp_path / "b", sync_timing=True).sync_timing is True


def test_the_trainer_trains_what_assemble_builds(tiny_overrides, darcy_file, tmp_path):
    cfg = load_config(overrides=tiny_overrides + ["data.val_fraction=0"])  # assemble below gets the whole train split
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    train = OperatorDataset(darcy_file, "train", cfg.data.train_resolution)
    meta = data_meta(train.file)
    assert meta == trainer.meta == {"in_channels": 1, "out_channels": 1, "n_space": 2, "grid": "nodal"}
    parts = assemble(cfg, meta, train)
    _same_weights(parts.net, trainer.net)
    assert parts.steps_per_epoch == trainer.steps_per_epoch
    assert type(parts.optimizer) is type(trainer.optimizer)


def test_datasets_and_normalizers_can_be_given(tiny_overrides, darcy_file, tmp_path):
    cfg = load_config(overrides=tiny_overrides + ["train.epochs=1"])
    train = OperatorDataset(darcy_file, "train", 9, n=8)
    test = OperatorDataset(darcy_file, "test", 9)
    meta = data_meta(train.file)
    unit = build_net(cfg.model, meta)  # unit normalizers
    trainer = Trainer(cfg, run_dir=tmp_path / "run", datasets=(train, test), normalizers=(unit.in_norm, unit.out_norm))
    assert len(trainer.train_data) == 8 and trainer.steps_per_epoch == 2
    assert torch.equal(trainer.net.in_norm.mean, torch.zeros_like(trainer.net.in_norm.mean))
    trainer.fit()
    rebuilt = model_from_checkpoint(load_checkpoint(tmp_path / "run"))
    _same_weights(rebuilt, trainer.net)
