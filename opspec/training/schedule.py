"""The learning-rate schedule: a linear warm-up over the first `train.warmup_epochs` epochs plus
`train.warmup_steps` steps (step by step), then cosine to zero, step halving or a constant over the
remaining steps.

`train.schedule_unit=step` (the default) moves the cosine at every optimizer step and reaches exactly
0 after the last one; `epoch` keeps one cosine value per epoch (the form before; it never reaches 0:
a 3-epoch run's last epoch ran at 0.25× the peak). Step halving is per epoch in both units.

The factor applied to each group's `initial_lr` is a closed-form function of the global step and
the config, so a schedule built at any epoch boundary (on resume, or after `train.epochs` changed)
gives the LR an uninterrupted run with that config would have used there.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from opspec.core.errors import OpspecError

SCHEDULERS = ("cosine", "step", "none")
SCHEDULE_UNITS = ("step", "epoch")


def lr_factor(
    step: int,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: int = 0,
    scheduler: str = "cosine",
    step_size: int = 100,
    gamma: float = 0.5,
    unit: str = "step",
    warmup_steps: int = 0,
) -> float:
    """The LR of global step `step` (0-based) as a fraction of the base LR.

    Warm-up: (step + 1) / W with W = warmup_epochs · steps_per_epoch + warmup_steps, reaching 1 on its
    last step. After it, with s = step − W the steps since warm-up ended, T = epochs · steps_per_epoch − W
    and e = ⌊s / steps_per_epoch⌋ the epochs since then: cosine ½(1 + cos(π s / T))
    (unit=step: 1 at the first step after warm-up, exactly 0 at s = T, after the last step) or
    ½(1 + cos(π e / (epochs − warmup_epochs))) (unit=epoch); step gamma^⌊e / step_size⌋; none 1.
    """
    if unit not in SCHEDULE_UNITS:
        raise ValueError(f"train.schedule_unit={unit!r}: expected one of {list(SCHEDULE_UNITS)}")
    if warmup_steps and unit == "epoch":
        raise ValueError(f"train.warmup_steps={warmup_steps}: needs train.schedule_unit=step (the per-epoch cosine counts whole epochs)")
    warm = warmup_epochs * steps_per_epoch + warmup_steps
    if step < warm:
        return (step + 1) / warm
    after = step - warm
    epoch = after // steps_per_epoch
    if scheduler == "cosine":
        if unit == "step":
            total = max(epochs * steps_per_epoch - warm, 1)
            return 0.0 if after >= total else 0.5 * (1.0 + math.cos(math.pi * after / total))
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs - warmup_epochs, 1)))
    if scheduler == "step":
        return gamma ** (epoch // step_size)
    if scheduler == "none":
        return 1.0
    raise ValueError(f"scheduler: expected one of {SCHEDULERS}, got {scheduler!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Any, steps_per_epoch: int = 1, start_epoch: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR for `cfg` (train.epochs, warmup_epochs, warmup_steps, scheduler, schedule_unit, step_size, gamma)
    positioned after `start_epoch` finished epochs: every group's LR is set for the next step.

    Call `.step()` after every optimizer step (steps_per_epoch=1: once per epoch, the warm-up then
    rising epoch by epoch). Each group's base LR is its `initial_lr` (set from its
    `lr` the first time; kept in the optimizer's state_dict), so after `optimizer.load_state_dict`
    this rebuilds a resumed run's schedule, also when `train.epochs` changed; the scheduler's own
    state need not be loaded. A config without `schedule_unit` gets the per-step cosine.
    """
    if steps_per_epoch < 1 or start_epoch < 0:
        raise ValueError(f"schedule: expected steps_per_epoch >= 1 and start_epoch >= 0, got {steps_per_epoch}, {start_epoch}")
    epochs, warmup = int(cfg.epochs), int(cfg.get("warmup_epochs", 0) or 0)
    scheduler, step_size, gamma = str(cfg.scheduler), int(cfg.step_size), float(cfg.gamma)
    unit = str(cfg.get("schedule_unit", "step") or "step")
    warmup_steps = int(cfg.get("warmup_steps", 0) or 0)
    if warmup_steps and warmup * steps_per_epoch + warmup_steps >= epochs * steps_per_epoch:
        raise OpspecError(f"train.warmup_steps={warmup_steps} with train.warmup_epochs={warmup} and train.epochs={epochs} "
                          f"of {steps_per_epoch} steps: the warm-up would fill the run; expected fewer warm-up steps")
    warm = warmup * steps_per_epoch + warmup_steps
    lr_factor(warm, steps_per_epoch, epochs, warmup, scheduler, step_size, gamma, unit, warmup_steps)  # a bad name fails here

    def factor(step: int) -> float:
        return lr_factor(step, steps_per_epoch, epochs, warmup, scheduler, step_size, gamma, unit, warmup_steps)

    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=start_epoch * steps_per_epoch - 1)
