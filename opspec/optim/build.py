"""One optimizer object for a whole model: matrices to the spectral optimizer, the rest to AdamW."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn

from opspec.optim.layouts import infer_layout
from opspec.optim.muon import Muon
from opspec.optim.options import ADAMW, FAMILY, OPTIMIZERS, optimizer_options, to_keywords
from opspec.optim.soap import build_soap
from opspec.optim.specmuon import SpecMuon
from opspec.optim.treatment import treat_parameters

__all__ = ["FAMILY", "OPTIMIZERS", "build_optimizer", "parameter_groups", "split_parameters"]


def parameter_groups(model: nn.Module, min_side: int = 2, treat: Mapping[str, str] | None = None
                     ) -> tuple[list[dict[str, Any]], list[nn.Parameter]]:
    """(spectral groups, AdamW parameters) by each parameter's structure (`treatment.py`, the one place
    that decides). Parameters whose layout is the shape rule's share one group with layout "auto" (so
    `optimizer.layout` still applies to them); each other layout (a TT core as "conv", an override)
    gets a group of its own with that layout."""
    auto: list[nn.Parameter] = []
    fixed: dict[str, list[nn.Parameter]] = {}
    others: list[nn.Parameter] = []
    for p, t in treat_parameters(model, min_side, treat):
        if t.layout is None:
            others.append(p)
        elif t.layout == infer_layout(p, min_side):
            auto.append(p)
        else:
            fixed.setdefault(t.layout, []).append(p)
    groups = [{"params": auto, "use_spectral": True}] if auto or not fixed else []
    groups += [{"params": params, "use_spectral": True, "layout": layout} for layout, params in fixed.items()]
    return groups, others


def split_parameters(model: nn.Module, min_side: int = 2, treat: Mapping[str, str] | None = None
                     ) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(matrices, others): the trainable parameters `parameter_groups` sends to the spectral map, and the rest."""
    groups, others = parameter_groups(model, min_side, treat)
    return [p for g in groups for p in g["params"]], others


def build_optimizer(model: nn.Module, name: str, process_group: dist.ProcessGroup | None = None,
                    **options: Any) -> torch.optim.Optimizer:
    """The optimizer `name` (one of `OPTIMIZERS`) over all of `model`'s trainable parameters.

    `options` are the optimizer's options by config key (opspec/optim/options.py; None: the default).
    adamw: torch.optim.AdamW (it steps complex parameters through their real view).
    soap: heavyball's SOAP on every parameter, complex ones through their real-pair view (soap.py).
    muon, <base>_p<p> (the family; muon = momentum_p0), specmuon: that optimizer on every parameter
    whose structure makes it matrices (linear and conv weights, dense spectral weights per mode,
    Tucker factors: `treatment.py`; `treat` overrides by name pattern), AdamW on the rest inside the
    same object (adamw_lr, adamw_weight_decay, betas, eps). `process_group`: share the spectral maps
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
    if name == "soap":
        return build_soap(model, **to_keywords(name, options))
    kwargs = to_keywords(name, options)
    defaults = {o.keyword: o.default for o in optimizer_options(name)}
    min_side = kwargs.pop("min_side", defaults["min_side"])
    adamw_lr = kwargs.pop("adamw_lr", None)
    adamw_wd = kwargs.pop("adamw_weight_decay", None)
    if name in FAMILY:
        kwargs["base"], kwargs["power"] = FAMILY[name]
    groups, others = parameter_groups(model, min_side, kwargs.pop("treat", None))
    if others:
        groups.append({
            "params": others,
            "use_spectral": False,
            "lr": kwargs.get("lr", defaults["lr"]) if adamw_lr is None else adamw_lr,
            "weight_decay": kwargs.get("weight_decay", defaults["weight_decay"]) if adamw_wd is None else adamw_wd,
        })
    cls = SpecMuon if name == "specmuon" else Muon
    return cls(groups, process_group=process_group, **kwargs)
