"""AdamW for the parameters a spectral optimizer does not orthogonalize, complex-safe.

A complex parameter is stepped through its real view (real and imaginary parts as two real
entries), as torch.optim.AdamW does, so second moments never mix the two parts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def adamw_step(p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
    """One decoupled-weight-decay Adam step on p, with bias-corrected moments kept in `state`."""
    if p.is_complex():
        p, grad = torch.view_as_real(p), torch.view_as_real(grad)
    beta1, beta2 = group["adamw_betas"]
    lr, eps, wd = group["lr"], group["adamw_eps"], group["weight_decay"]
    if "exp_avg" not in state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
    state["step"] += 1
    m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias1, bias2 = 1 - beta1**t, 1 - beta2**t
    p.mul_(1 - lr * wd)
    p.addcdiv_(m, (v / bias2).sqrt_().add_(eps), value=-lr / bias1)
