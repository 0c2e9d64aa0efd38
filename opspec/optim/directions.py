"""The direction D a spectral map is applied to, from each parameter's gradient G (one piece each).

    gradient:  D = G                                           (SpecMuon: its momentum comes after the map)
    momentum:  B ← μB + (1 − μ)G;  D = (1 − μ)G + μB if Nesterov else B     (Muon, torch.optim.Muon's EMA;
                                                               SpecMuon with momentum_placement=before)
    adam:      m ← β₁m + (1 − β₁)G,  v ← β₂v + (1 − β₂)G²;  D = m̂ / (√v̂ + ε)
               with m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ); complex G per real and imaginary part

Each takes the gradients, their per-parameter state dicts (torch.optim's `self.state[p]`, so the keys
`momentum_buffer`, `exp_avg`, `exp_avg_sq`, `step` are the checkpoint's) and the options, and runs one
foreach call per line of the math for the whole list.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor


def gradient_direction(grads: list[Tensor], states: list[dict[str, Any]]) -> list[Tensor]:
    """D = G: no state."""
    return grads


def momentum_direction(grads: list[Tensor], states: list[dict[str, Any]], momentum: float, nesterov: bool) -> list[Tensor]:
    """The EMA momentum buffer B ← μB + (1 − μ)G, or its Nesterov look-ahead (1 − μ)G + μB."""
    for state, g in zip(states, grads):
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(g)
    bufs = [state["momentum_buffer"] for state in states]
    torch._foreach_lerp_(bufs, grads, 1 - momentum)
    return torch._foreach_lerp(grads, bufs, momentum) if nesterov else bufs


def adam_direction(grads: list[Tensor], states: list[dict[str, Any]], betas: tuple[float, float], eps: float) -> list[Tensor]:
    """Update Adam's moments in each state with its gradient; return each bias-corrected m̂ / (√v̂ + ε).

    A complex gradient goes through its real view, so its real and imaginary parts have separate
    second moments (as torch.optim.AdamW); its direction comes back complex.
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


def _momentum_base(grads: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> list[Tensor]:
    return momentum_direction(grads, states, group["momentum"], group["nesterov"])


def _adam_base(grads: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> list[Tensor]:
    return adam_direction(grads, states, group["adam_betas"], group["adam_eps"])


# The family's bases by name: (grads, states, group options) → directions. A new base is one entry
# here (its options, if any, go in options.MUON_OWN); the names <base>_p<p> follow from the keys.
BASES: dict[str, Callable[[list[Tensor], list[dict[str, Any]], dict[str, Any]], list[Tensor]]] = {
    "momentum": _momentum_base,
    "adam": _adam_base,
}
