"""AdamW for the parameters a spectral optimizer does not orthogonalize, complex-safe.

A complex parameter is stepped through its real view (real and imaginary parts as two real
entries), as torch.optim.AdamW does, so second moments never mix the two parts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def adam_direction(grad: Tensor, state: dict[str, Any], betas: tuple[float, float], eps: float) -> Tensor:
    """Update Adam's moments in `state` with `grad` and return the bias-corrected m̂ / (√v̂ + ε).

    A complex gradient is taken through its real view, so its real and imaginary parts have
    separate second moments; the direction comes back complex.
    """
    g = torch.view_as_real(grad) if grad.is_complex() else grad
    beta1, beta2 = betas
    if "exp_avg" not in state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(g)
        state["exp_avg_sq"] = torch.zeros_like(g)
    state["step"] += 1
    m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    d = (m / (1 - beta1**t)).div_((v / (1 - beta2**t)).sqrt_().add_(eps))
    return torch.view_as_complex(d) if grad.is_complex() else d


def adamw_step(p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
    """One decoupled-weight-decay Adam step on p, with bias-corrected moments kept in `state`."""
    direction = adam_direction(grad, state, group["adamw_betas"], group["adamw_eps"])
    p.mul_(1 - group["lr"] * group["weight_decay"])
    p.add_(direction, alpha=-group["lr"])
