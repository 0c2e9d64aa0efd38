"""One optimizer object for a whole model: matrices to the spectral optimizer, the rest to AdamW."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from opspec.optim.layouts import infer_layout
from opspec.optim.muon import Muon
from opspec.optim.options import ADAMW, FAMILY, OPTIMIZERS, optimizer_options, to_keywords
from opspec.optim.specmuon import SpecMuon

__all__ = ["FAMILY", "OPTIMIZERS", "build_optimizer", "parameter_treatment", "split_parameters"]


def parameter_treatment(name: str, p: nn.Parameter, min_side: int = 2) -> str:
    """How the optimizer treats one parameter: "spectral" (a matrix layout exists) or "adamw"
    (vectors, biases, norms, tiny tensors). The one place that decides; `name` is the parameter's
    name in the model, for rules that go by structure."""
    return "spectral" if infer_layout(p, min_side) is not None else "adamw"


def split_parameters(model: nn.Module, min_side: int = 2) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(matrices, others): the trainable parameters `parameter_treatment` sends to the spectral map, and the rest."""
    matrices, others = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (matrices if parameter_treatment(name, p, min_side) == "spectral" else others).append(p)
    return matrices, others


def build_optimizer(model: nn.Module, name: str, process_group: dist.ProcessGroup | None = None,
                    **options: Any) -> torch.optim.Optimizer:
    """The optimizer `name` (one of `OPTIMIZERS`) over all of `model`'s trainable parameters.

    `options` are the optimizer's options by config key (opspec/optim/options.py; None: the default).
    adamw: torch.optim.AdamW (it steps complex parameters through their real view).
    muon, <base>_p<p> (the family; muon = momentum_p0), specmuon: that optimizer on every parameter
    with a matrix layout (2-D, conv, complex per-mode spectral), AdamW on the rest inside the same
    object (adamw_lr, adamw_weight_decay, betas, eps). `process_group`: share the spectral maps
    across its ranks.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer name {name!r}: expected one of {OPTIMIZERS}")
    if name == "adamw":
        known = {o.name for o in ADAMW}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"adamw: unknown options {sorted(unknown)} (known: {sorted(known)})")
        kwargs = {k: tuple(v) if k == "betas" else v for k, v in options.items() if v is not None}
        return torch.optim.AdamW(model.parameters(), **kwargs)
    kwargs = to_keywords(name, options)
    defaults = {o.keyword: o.default for o in optimizer_options(name)}
    min_side = kwargs.pop("min_side", defaults["min_side"])
    adamw_lr = kwargs.pop("adamw_lr", None)
    adamw_wd = kwargs.pop("adamw_weight_decay", None)
    if name in FAMILY:
        kwargs["base"], kwargs["power"] = FAMILY[name]
    matrices, others = split_parameters(model, min_side)
    groups: list[dict[str, Any]] = [{"params": matrices, "use_spectral": True}]
    if others:
        groups.append({
            "params": others,
            "use_spectral": False,
            "lr": kwargs.get("lr", defaults["lr"]) if adamw_lr is None else adamw_lr,
            "weight_decay": kwargs.get("weight_decay", defaults["weight_decay"]) if adamw_wd is None else adamw_wd,
        })
    cls = SpecMuon if name == "specmuon" else Muon
    return cls(groups, process_group=process_group, **kwargs)
