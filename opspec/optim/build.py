"""One optimizer object for a whole model: matrices to the spectral optimizer, the rest to AdamW."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from opspec.optim.layouts import infer_layout
from opspec.optim.muon import BASES, Muon
from opspec.optim.specmuon import SpecMuon
from opspec.optim.spectral_power import POWERS

# The base × p family by name: "<base>_p<p>" (Muon is momentum_p0), e.g. adam_p0.5.
FAMILY: dict[str, tuple[str, float]] = {f"{base}_p{p:g}": (base, p) for base in BASES for p in POWERS}
OPTIMIZERS = ("adamw", "muon", "specmuon", *FAMILY)


def split_parameters(model: nn.Module, min_side: int = 2) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(matrices, others): parameters with a matrix layout, and vectors, biases, norms and tiny tensors."""
    matrices, others = [], []
    for p in model.parameters():
        if p.requires_grad:
            (matrices if infer_layout(p, min_side) is not None else others).append(p)
    return matrices, others


def build_optimizer(model: nn.Module, name: str, **hyper: Any) -> torch.optim.Optimizer:
    """The optimizer `name` (one of `OPTIMIZERS`) over all of `model`'s trainable parameters.

    adamw: torch.optim.AdamW (it steps complex parameters through their real view). Hyper: lr,
    weight_decay, betas, eps.
    muon, <base>_p<p> (the family; muon = momentum_p0), specmuon: that optimizer on every parameter
    with a matrix layout (2-D, conv, complex per-mode spectral), AdamW on the rest inside the same
    object. Hyper: the optimizer's options, plus adamw_lr (default: lr), adamw_weight_decay
    (default: weight_decay), betas and eps for the AdamW part, min_side.
    """
    if name == "adamw":
        allowed = {"lr", "weight_decay", "betas", "eps"}
        unknown = set(hyper) - allowed
        if unknown:
            raise ValueError(f"adamw: unknown options {sorted(unknown)} (known: {sorted(allowed)})")
        betas = tuple(hyper.pop("betas", (0.9, 0.999)))
        return torch.optim.AdamW(model.parameters(), betas=betas, **hyper)
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer name {name!r}: expected one of {OPTIMIZERS}")
    hyper = dict(hyper)
    min_side = hyper.pop("min_side", 2)
    adamw_lr = hyper.pop("adamw_lr", None)
    adamw_wd = hyper.pop("adamw_weight_decay", None)
    betas = tuple(hyper.pop("betas", (0.9, 0.999)))
    eps = hyper.pop("eps", 1e-8)
    if name in FAMILY:
        hyper["base"], hyper["power"] = FAMILY[name]
    cls = SpecMuon if name == "specmuon" else Muon
    matrices, others = split_parameters(model, min_side)
    lr = hyper.get("lr", 0.02)
    groups: list[dict[str, Any]] = [{"params": matrices, "use_spectral": True}]
    if others:
        groups.append({
            "params": others,
            "use_spectral": False,
            "lr": lr if adamw_lr is None else adamw_lr,
            "weight_decay": hyper.get("weight_decay", 0.0) if adamw_wd is None else adamw_wd,
        })
    return cls(groups, adamw_betas=betas, adamw_eps=eps, **hyper)
