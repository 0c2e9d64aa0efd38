"""The LR schedule (opspec/training/schedule.py): warm-up by hand, the schedules against torch's own and
the closed form, per step (the default) and per epoch, and a schedule rebuilt at an epoch boundary
(resume, also with train.epochs changed)."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from opspec.core.errors import OpspecError
from opspec.training.config import load_config
from opspec.training.schedule import build_scheduler, lr_factor


def _optimizer(lrs=(0.1, 0.03)) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups)


def _cfg(**kw):
    return OmegaConf.create({"epochs": 5, "warmup_epochs": 0, "scheduler": "cosine", "schedule_unit": "step",
                             "step_size": 2, "gamma": 0.5, **kw})


def _run(optimizer, scheduler, steps: int) -> list[list[float]]:
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_is_linear_per_step_then_cosine_over_the_remaining_epochs():
    # 2 warm-up epochs of 3 steps: 1/6 … 6/6 of the base LR; then cosine over T = 5 − 2 epochs
    opt = _optimizer()
    lrs = _run(opt, build_scheduler(opt, _cfg(warmup_epochs=2, schedule_unit="epoch"), steps_per_epoch=3), 15)
    expect = [k / 6 for k in range(1, 7)] + [0.5 * (1 + math.cos(math.pi * e / 3)) for e in (0, 1, 2) for _ in range(3)]
    for got, f in zip(lrs, expect):
        assert got == pytest.approx([0.1 * f, 0.03 * f], rel=1e-14)


@pytest.mark.parametrize("name, reference", [
    ("cosine", lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)),
    ("step", lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)),
    ("none", lambda opt: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)),
])
def test_without_warmup_each_epoch_has_torchs_lr(name, reference):
    opt, ref_opt = _optimizer(), _optimizer()
    ours = _run(opt, build_scheduler(opt, _cfg(scheduler=name, schedule_unit="epoch"), steps_per_epoch=4), 20)
    theirs = _run(ref_opt, reference(ref_opt), 5)  # torch's, stepped once per epoch
    for step, got in enumerate(ours):
        assert got == pytest.approx(theirs[step // 4], rel=1e-12, abs=1e-15), step


def test_rebuilt_after_an_epoch_continues_the_uninterrupted_schedule():
    cfg = _cfg(warmup_epochs=2, epochs=6)
    opt = _optimizer()
    full = _run(opt, build_scheduler(opt, cfg, steps_per_epoch=3), 18)

    first = _optimizer()
    _run(first, build_scheduler(first, cfg, steps_per_epoch=3), 3)  # one epoch, inside the warm-up
    resumed = _optimizer(lrs=(9.0, 9.0))  # a fresh optimizer's lr is overwritten by the saved initial_lr
    resumed.load_state_dict(first.state_dict())
    rest = _run(resumed, build_scheduler(resumed, cfg, steps_per_epoch=3, start_epoch=1), 15)
    assert rest == full[3:]


def test_rebuilt_with_more_epochs_follows_the_longer_schedule():
    opt = _optimizer()
    _run(opt, build_scheduler(opt, _cfg(epochs=4), steps_per_epoch=2), 6)  # 3 of 4 epochs
    longer = _cfg(epochs=8)
    continued = _run(opt, build_scheduler(opt, longer, steps_per_epoch=2, start_epoch=3), 10)
    fresh = _optimizer()
    assert continued == _run(fresh, build_scheduler(fresh, longer, steps_per_epoch=2), 16)[6:]
    assert continued[0][0] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 3 / 8)), rel=1e-14)


def test_lr_factor_by_hand_and_bad_names():
    assert lr_factor(0, 10, 5, warmup_epochs=1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 5, warmup_epochs=1) == 1.0
    assert lr_factor(10, 10, 5, warmup_epochs=1) == 1.0  # the schedule's first epoch
    assert lr_factor(30, 10, 5, warmup_epochs=1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert lr_factor(5, 1, 10, scheduler="step", step_size=2, gamma=0.1) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="scheduler"):
        build_scheduler(_optimizer(), _cfg(scheduler="linear"))


def test_per_step_cosine_is_the_closed_form_and_reaches_zero_after_the_last_step():
    # 1 warm-up epoch then 4 epochs of 3 steps: T = 12 cosine steps; step t of them runs at ½(1 + cos(π t / T))
    opt = _optimizer()
    scheduler = build_scheduler(opt, _cfg(warmup_epochs=1), steps_per_epoch=3)
    lrs = _run(opt, scheduler, 15)
    expect = [1 / 3, 2 / 3, 1.0] + [0.5 * (1 + math.cos(math.pi * t / 12)) for t in range(12)]
    for step, (got, f) in enumerate(zip(lrs, expect)):
        assert got == pytest.approx([0.1 * f, 0.03 * f], rel=1e-14), step
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]  # after the last step: exactly zero
    assert lrs[-1][0] > 0 and lrs[-1][0] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 11 / 12)))
    assert len({lr[0] for lr in lrs[3:]}) == 12  # a new value every step (per epoch: 4)


def test_per_step_cosine_matches_torchs_cosine_stepped_every_step():
    opt, ref_opt = _optimizer(), _optimizer()
    ours = _run(opt, build_scheduler(opt, _cfg(), steps_per_epoch=4), 20)
    theirs = _run(ref_opt, torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=20), 20)
    for step, (got, ref) in enumerate(zip(ours, theirs)):
        assert got == pytest.approx(ref, rel=1e-9, abs=1e-15), step


def test_a_three_epoch_run_ends_at_zero_per_step_and_at_a_quarter_per_epoch():
    # the example: per epoch, the last epoch of 3 ran at ¼ of the peak
    per_step = [lr_factor(s, 10, 3, unit="step") for s in range(31)]
    per_epoch = [lr_factor(s, 10, 3, unit="epoch") for s in range(31)]
    assert per_step[30] == 0.0 and per_step[29] < 0.003
    assert per_epoch[29] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="train.schedule_unit='epochs'"):
        lr_factor(0, 10, 3, unit="epochs")


def test_warmup_steps_add_to_the_warmup_and_the_cosine_still_ends_at_zero():
    # 3 epochs of 3 steps, 4 warm-up steps: 1/4 … 4/4, then T = 9 − 4 = 5 cosine steps
    opt = _optimizer()
    lrs = _run(opt, build_scheduler(opt, _cfg(epochs=3, warmup_steps=4), steps_per_epoch=3), 9)
    expect = [1 / 4, 2 / 4, 3 / 4, 1.0] + [0.5 * (1 + math.cos(math.pi * t / 5)) for t in range(5)]
    for step, (got, f) in enumerate(zip(lrs, expect)):
        assert got == pytest.approx([0.1 * f, 0.03 * f], rel=1e-14), step
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]
    with pytest.raises(OpspecError, match=r"train.warmup_steps=9 .* would fill the run"):
        build_scheduler(_optimizer(), _cfg(epochs=3, warmup_steps=9), steps_per_epoch=3)
    with pytest.raises(OpspecError, match=r"train.warmup_steps=2 with train.schedule_unit=epoch"):
        load_config(overrides=["train.warmup_steps=2", "train.schedule_unit=epoch"])
