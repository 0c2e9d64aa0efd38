"""One optimizer object for a whole model: labelled matrices to the spectral optimizer, the rest to AdamW."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn

from opspec.optim.layouts import infer_layout
from opspec.optim.registry import optimizer_entry, optimizer_options, to_keywords
from opspec.optim.treatment import Labels, treat_parameters

__all__ = ["build_optimizer", "parameter_groups", "split_parameters"]


def parameter_groups(model: nn.Module, min_side: int = 2, treat: Mapping[str, str] | None = None,
                     labels: Labels | None = None) -> tuple[list[dict[str, Any]], list[nn.Parameter]]:
    """(spectral groups, AdamW parameters) by each parameter's treatment (`treatment.py`: the caller's
    labels, the shape rule for unlabelled parameters, `treat` overrides). Parameters whose layout is
    the shape rule's share one group with layout "auto" (so `optimizer.layout` still applies to them);
    each other layout (a TT core as "per_mode", an override) gets a group of its own with that layout."""
    auto: list[nn.Parameter] = []
    fixed: dict[str, list[nn.Parameter]] = {}
    others: list[nn.Parameter] = []
    for p, t in treat_parameters(model, min_side, treat, labels):
        if t.layout is None:
            others.append(p)
        elif t.layout == infer_layout(p, min_side):
            auto.append(p)
        else:
            fixed.setdefault(t.layout, []).append(p)
    groups = [{"params": auto, "use_spectral": True}] if auto or not fixed else []
    groups += [{"params": params, "use_spectral": True, "layout": layout} for layout, params in fixed.items()]
    return groups, others


def split_parameters(model: nn.Module, min_side: int = 2, treat: Mapping[str, str] | None = None,
                     labels: Labels | None = None) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(matrices, others): the trainable parameters `parameter_groups` sends to the spectral map, and the rest."""
    groups, others = parameter_groups(model, min_side, treat, labels)
    return [p for g in groups for p in g["params"]], others


def build_optimizer(model: nn.Module, name: str, process_group: dist.ProcessGroup | None = None,
                    labels: Labels | None = None, **options: Any) -> torch.optim.Optimizer:
    """The optimizer `name` (one of `registry.OPTIMIZERS`) over all of `model`'s trainable parameters.

    `options` are the optimizer's options by config key (None: the default). A non-spectral one
    (adamw: torch.optim.AdamW, which steps complex parameters through their real view) takes every
    parameter. A spectral one (muon, <base>_p<p> (muon = momentum_p0), specmuon) takes each parameter
    as its treatment says (`treatment.py`): `labels` from the caller (`opspec.models.model_labels`
    for the zoo's structure: Tucker cores per rank mode, separable weights to AdamW, …; without
    labels, the shape rule for every parameter, which is right for linear and conv weights), `treat`
    overrides by name pattern; AdamW takes the rest inside the same object (adamw_lr,
    adamw_weight_decay, betas, eps). `process_group`: share the spectral maps across its ranks.
    """
    entry = optimizer_entry(name)
    kwargs = to_keywords(name, options)
    if not entry.spectral:
        return entry.make(model.parameters(), **kwargs)
    defaults = {o.keyword: o.default for o in optimizer_options(name)}
    min_side = kwargs.pop("min_side", defaults["min_side"])
    adamw_lr = kwargs.pop("adamw_lr", None)
    adamw_wd = kwargs.pop("adamw_weight_decay", None)
    kwargs.update(entry.fixed)
    groups, others = parameter_groups(model, min_side, kwargs.pop("treat", None), labels)
    if others:
        groups.append({
            "params": others,
            "use_spectral": False,
            "lr": kwargs.get("lr", defaults["lr"]) if adamw_lr is None else adamw_lr,
            "weight_decay": kwargs.get("weight_decay", defaults["weight_decay"]) if adamw_wd is None else adamw_wd,
        })
    return entry.make(groups, process_group=process_group, **kwargs)
