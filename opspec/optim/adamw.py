"""AdamW for the parameters a spectral optimizer does not orthogonalize, complex-safe.

A complex parameter is stepped through its real view (real and imaginary parts as two real
entries), as torch.optim.AdamW does, so second moments never mix the two parts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from opspec.optim.directions import adam_direction


def adamw_group_step(params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> None:
    """One decoupled-weight-decay Adam step on every parameter of a group (lr, weight_decay, adamw_betas, adamw_eps)."""
    if not params:
        return
    directions = adam_direction([p.grad for p in params], states, group["adamw_betas"], group["adamw_eps"])
    torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
    torch._foreach_add_(params, directions, alpha=-group["lr"])
