"""The Trainer's hooks (Lightning-like) and the built-in callbacks that use them: the finiteness check,
the optimizer timer behind `optimizer_share`, and train.log's per-step and per-epoch lines.

A callback overrides the hooks it needs; the Trainer calls each hook on every callback in order, the
built-in ones first. Hooks see the Trainer and a `Step` (one optimizer step) or an epoch record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from opspec.core.errors import OpspecError

if TYPE_CHECKING:
    from opspec.training.trainer import Trainer


class DivergedError(OpspecError):
    """A non-finite loss, gradient or test error: the run stops, keeping its last good checkpoint."""


@dataclass
class Step:
    """One optimizer step as the hooks see it: where it is, its batch, and what it computed so far."""

    epoch: int  # 1-based
    index: int  # 1-based within the epoch
    global_step: int  # 1-based over the run (the logger's axis)
    a: torch.Tensor
    u: torch.Tensor
    n_global: int  # samples in the global batch (all ranks)
    lr: float  # group 0's LR this step used
    loss: torch.Tensor | None = None  # the global batch's loss (after the backward pass)
    grad_norm: torch.Tensor | None = None  # before clipping (only when train.grad_clip is set)


class Callback:
    """Base class: every hook does nothing; a callback overrides what it needs."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch `fit` runs."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the epoch's first batch."""

    def on_step_start(self, trainer: Trainer, step: Step) -> None:
        """The batch is on the device; nothing has been computed."""

    def on_after_backward(self, trainer: Trainer, step: Step) -> None:
        """Gradients are averaged over ranks and unscaled, `step.loss` is set; before clipping."""

    def on_before_optimizer_step(self, trainer: Trainer, step: Step) -> None:
        """Gradients are final (clipped); `optimizer.step` comes next."""

    def on_after_optimizer_step(self, trainer: Trainer, step: Step) -> None:
        """`optimizer.step` returned; the schedule has not stepped yet."""

    def on_step_end(self, trainer: Trainer, step: Step) -> None:
        """The step is complete, the schedule stepped (the LRs are the next step's)."""

    def on_train_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """The epoch's training part is done (every epoch); a callback may add keys to its record (before the test error)."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """An evaluated epoch (every train.eval_every and the last) is complete: tested, and (rank 0)
        checkpointed and written to metrics.jsonl."""

    def on_fit_end(self, trainer: Trainer, history: list[dict[str, Any]]) -> None:
        """`fit` is about to return its history."""


EpochCallback = Callable[["Trainer", dict[str, Any]], None]


class EpochFunction(Callback):
    """A plain function `f(trainer, record)` called at each evaluated epoch's end (the Trainer's original callback form)."""

    def __init__(self, function: EpochCallback) -> None:
        self.function = function

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.function(trainer, record)


def as_callback(callback: Callback | EpochCallback) -> Callback:
    """A Callback as it is, a plain function as an epoch-end callback."""
    return callback if isinstance(callback, Callback) else EpochFunction(callback)


def why_not_finite(a: torch.Tensor, u: torch.Tensor, base_lr: float, lr: float) -> str:
    """The likely cause of a non-finite loss on the batch (a, u)."""
    if not (torch.isfinite(a).all() and torch.isfinite(u).all()):
        return "the batch holds NaN or Inf in the data"
    zero = (u.flatten(1).norm(dim=1) == 0).nonzero().flatten().tolist()
    if zero:
        return f"{len(zero)} sample(s) of the batch have an all-zero target u, whose relative L2 is 0/0, undefined"
    return f"the weights diverged: optimizer.lr={base_lr:g} is likely too large (the LR of this step was {lr:g})"


def grads_finite(parameters: Any) -> bool:
    """True when every gradient is finite (one reduction: the sum of the gradients' norms)."""
    norms = [torch.linalg.vector_norm(p.grad) for p in parameters if p.grad is not None]
    return not norms or bool(torch.isfinite(torch.stack(norms).sum()))


class FiniteCheck(Callback):
    """Stop the run with a DivergedError on a non-finite loss or gradient, before the optimizer applies it
    (fp16 leaves a non-finite gradient to GradScaler, which skips that step and lowers its scale)."""

    def on_after_backward(self, trainer: Trainer, step: Step) -> None:
        assert step.loss is not None
        bad = None if torch.isfinite(step.loss) else f"the training loss is {step.loss.item()}"  # the same on every rank
        if bad is None and not trainer.precision.scaler.is_enabled() and not grads_finite(trainer.net.parameters()):
            bad = "a gradient is not finite"
        if bad is not None:
            raise trainer.stop_error(step.epoch, step.index, bad,
                                     why_not_finite(step.a, step.u, trainer.cfg.optimizer.lr, step.lr))


class OptimizerTimer(Callback):
    """The share of an epoch spent in `optimizer.step` (the record's `optimizer_share`). On CUDA it is
    timed between synchronizes only when `trainer.sync_timing` is on (it slows the step), else left out."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.sync = False
        self.tick = 0.0

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.seconds = 0.0
        self.sync = trainer.sync_timing and trainer.device.type == "cuda"

    def on_before_optimizer_step(self, trainer: Trainer, step: Step) -> None:
        if self.sync:
            torch.cuda.synchronize(trainer.device)
        self.tick = time.perf_counter()

    def on_after_optimizer_step(self, trainer: Trainer, step: Step) -> None:
        if self.sync:
            torch.cuda.synchronize(trainer.device)
        self.seconds += time.perf_counter() - self.tick

    def on_train_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.device.type != "cuda" or self.sync:  # without a synchronize, CUDA's time would be the launches'
            record["optimizer_share"] = self.seconds / record["epoch_seconds"]


class RunLog(Callback):
    """train.log: per step the loss, each group's LR and the gradient norm; per epoch the metrics record."""

    def on_step_end(self, trainer: Trainer, step: Step) -> None:
        if not trainer.logger.active:
            return
        assert step.loss is not None
        values = {"loss": step.loss.item(), **{f"lr/group{i}": g["lr"] for i, g in enumerate(trainer.optimizer.param_groups)}}
        if step.grad_norm is not None:
            values["grad_norm"] = step.grad_norm.item()
        trainer.logger.log_step(step.global_step, values)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.ranks.is_main:
            trainer.logger.log_epoch(record["epoch"] * trainer.steps_per_epoch, record)
