"""The last piece of a spectral step: the shape rule for the learning rate and the decoupled update.

    γ = lr · scale(fan_out, fan_in)     original: √max(1, fan_out/fan_in)  (Keller Jordan's Muon)
                                        match_rms_adamw: 0.2·√max(fan_out, fan_in)  (Moonshot's)
                                        none: 1
    θ ← (1 − lr·λ) θ − γ U              (decoupled weight decay λ; U the mapped direction)
    heavy ball (SpecMuon, momentum_placement=after): B ← μB + O, U = B

fan_out/fan_in come from the layout (`layouts.fans`): rows = out for linear and conv weights, rows =
in for the per-mode matrices of spectral weights, so both get the same rule.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

LR_RULES = ("original", "match_rms_adamw", "none")


def lr_scale(fan_out: int, fan_in: int, rule: str) -> float:
    """Shape rule for the step size: √max(1, fan_out/fan_in) ("original"), 0.2·√max(fan_out, fan_in)
    ("match_rms_adamw") or 1 ("none")."""
    if rule == "original":
        return math.sqrt(max(1.0, fan_out / fan_in))
    if rule == "match_rms_adamw":
        return 0.2 * math.sqrt(max(fan_out, fan_in))
    if rule == "none":
        return 1.0
    raise ValueError(f"adjust_lr: expected one of {LR_RULES}, got {rule!r}")


def heavy_ball(state: dict[str, Any], update: Tensor, momentum: float) -> Tensor:
    """B ← μB + O (no dampening), kept in `state["momentum_buffer"]`; returns B."""
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = torch.zeros_like(update)
    return state["momentum_buffer"].mul_(momentum).add_(update)


def decoupled_update(p: Tensor, update: Tensor, lr: float, weight_decay: float, scale: float) -> None:
    """θ ← (1 − lr·λ)θ − lr·scale·U, in place."""
    p.mul_(1 - lr * weight_decay)
    p.add_(update, alpha=-lr * scale)
