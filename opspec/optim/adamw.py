"""AdamW: the complex-safe step for the parameters a spectral optimizer does not orthogonalize, and
the options of `optimizer.name=adamw` (torch.optim.AdamW on the whole model).

A complex parameter is stepped through its real view (real and imaginary parts as two real
entries), as torch.optim.AdamW does, so second moments never mix the two parts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from opspec.optim.directions import adam_direction
from opspec.optim.options import ADAMW_PART, NON_NEGATIVE, POSITIVE, Option

# torch.optim.AdamW's options (its own keywords: betas and eps are not renamed as in the AdamW part).
ADAMW = (
    Option("lr", float, 1e-3, "AdamW's learning rate", POSITIVE),
    Option("weight_decay", float, 1e-2, "AdamW's decoupled weight decay", NON_NEGATIVE),
    *(replace(o, kwarg=None) for o in ADAMW_PART[:2]),
)


def adamw_group_step(params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> None:
    """One decoupled-weight-decay Adam step on every parameter of a group (lr, weight_decay, adamw_betas, adamw_eps)."""
    if not params:
        return
    directions = adam_direction([p.grad for p in params], states, group["adamw_betas"], group["adamw_eps"])
    torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
    torch._foreach_add_(params, directions, alpha=-group["lr"])
