"""AdamW for the parameters a spectral optimizer does not orthogonalize, complex-safe.

A complex parameter is stepped through its real view (real and imaginary parts as two real
entries), as torch.optim.AdamW does, so second moments never mix the two parts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def adam_directions(
    grads: list[Tensor], states: list[dict[str, Any]], betas: tuple[float, float], eps: float
) -> list[Tensor]:
    """Update Adam's moments in each `state` with its gradient; return each bias-corrected m̂ / (√v̂ + ε).

    One foreach call per line of the update for the whole list. A complex gradient goes through its
    real view, so its real and imaginary parts have separate second moments; its direction comes
    back complex.
    """
    beta1, beta2 = betas
    reals = [torch.view_as_real(g) if g.is_complex() else g for g in grads]
    for state, g in zip(states, reals):
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(g)
            state["exp_avg_sq"] = torch.zeros_like(g)
        state["step"] += 1
    m = [state["exp_avg"] for state in states]
    v = [state["exp_avg_sq"] for state in states]
    torch._foreach_lerp_(m, reals, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, reals, reals, value=1 - beta2)
    denom = torch._foreach_div(v, [1 - beta2 ** state["step"] for state in states])
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    directions = torch._foreach_div(m, [1 - beta1 ** state["step"] for state in states])
    torch._foreach_div_(directions, denom)
    return [torch.view_as_complex(d) if g.is_complex() else d for d, g in zip(directions, grads)]


def adamw_group_step(params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> None:
    """One decoupled-weight-decay Adam step on every parameter of a group (lr, weight_decay, adamw_betas, adamw_eps)."""
    if not params:
        return
    directions = adam_directions([p.grad for p in params], states, group["adamw_betas"], group["adamw_eps"])
    torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
    torch._foreach_add_(params, directions, alpha=-group["lr"])
