"""Muon and its U Σ^p Vᴴ family: the step skeleton (step.py) with a direction and the map Ψ_p.

Per spectral parameter, each step (Muon: the torch.optim.Muon conventions):

    D = momentum (EMA, Nesterov) of G   base "momentum"  (directions.momentum_direction)
      = m̂ / (√v̂ + ε)                    base "adam", own adam_betas, adam_eps  (directions.adam_direction)
    O = Ψ_p(D) per matrix of the parameter's layout (per Fourier mode for spectral weights):
        p = 0    polar(D) = U Vᴴ, Newton–Schulz with the configured ns_steps and coefficients (Muon);
        p = ¼, ½ U Σ^p Vᴴ by `spectral_power`;  p = 1  D itself.
        For p > 0 each matrix is rescaled to ‖O‖_F = √min(rows, cols), the norm of a full-rank polar
        factor, so the LR rules and learning rates carry over across p.
    θ ← (1 − lr·λ)θ − lr·scale(fan_out, fan_in)·O          (apply.py)

Muon is the (momentum, p = 0) member, the default. "p = 0" means this polar factor everywhere.
The family's names <base>_p<p> (`FAMILY`) come from the bases (`directions.BASES`) and the powers
(`spectral_power.POWERS`); Muon's own options are declared here (`MUON_OWN`).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import Tensor

from opspec.optim.directions import BASES as BASE_DIRECTIONS
from opspec.optim.options import ADAMW_GROUP, POSITIVE, SPECTRAL, Option, betas_pair, boolean, choice, is_real
from opspec.optim.polar import frobenius_norms, polar
from opspec.optim.sharding import Work
from opspec.optim.spectral_power import DEFAULT_STEPS, POWERS, spectral_power
from opspec.optim.step import Item, SpectralOptimizer

__all__ = ["BASES", "FAMILY", "MUON", "MUON_OWN", "NESTEROV", "POWERS", "Muon", "map_cost", "spectral_map"]

BASES = tuple(BASE_DIRECTIONS)  # ("momentum", "adam")

# One declaration for Muon's momentum base and SpecMuon's momentum before the map (specmuon.py reuses it).
NESTEROV = Option("nesterov", bool, True, "Nesterov look-ahead of the EMA momentum: muon's momentum base; specmuon "
                  "reads it only with momentum_placement=before", boolean)

MUON_OWN = (
    choice("base", "momentum", "direction before the map: momentum | adam (set by the name <base>_p<p>)", BASES,
           in_config=False),
    Option("power", float, 0.0, "p of U Σ^p Vᴴ: 0 | 0.25 | 0.5 | 1 (set by the name <base>_p<p>)",
           lambda x: None if is_real(x) and float(x) in POWERS else f"one of {list(POWERS)}", in_config=False),
    NESTEROV,
    Option("adam_betas", list[float], (0.9, 0.999), "(β₁, β₂) of the adam base", betas_pair, convert=tuple),
    Option("adam_eps", float, 1e-8, "ε of the adam base m̂/(√v̂ + ε)", POSITIVE),
)
MUON = SPECTRAL + MUON_OWN
# The family by name: <base>_p<p> → (base, p); momentum_p0 is muon.
FAMILY: dict[str, tuple[str, float]] = {f"{base}_p{p:g}": (base, p) for base in BASES for p in POWERS}


def map_cost(rows: int, cols: int, is_complex: bool, power: float, ns_steps: int) -> float:
    """Estimated multiply–adds of Ψ_p on one matrix: the weight that balances ranks' shares."""
    m, n = min(rows, cols), max(rows, cols)
    if power == 0.0:
        cost = ns_steps * (2 * m * m * n + m**3)  # X Xᴴ, A², B X per Newton–Schulz step
    elif power == 1.0:
        cost = 2 * m * n  # the Frobenius rescale only
    else:
        cost = m * m * n + DEFAULT_STEPS[torch.float32] * 3 * m**3  # the Gram matrix, then coupled steps of three products
    return float(cost * (4 if is_complex else 1))


def spectral_map(M: Tensor, power: float, ns_steps: int, coefficients: Any, eps: float, compute_dtype: Any) -> Tensor:
    """Ψ_p of every matrix in the batch M; for p > 0 rescaled to the Frobenius norm √min(rows, cols).

    `compute_dtype` is Newton–Schulz's (p = 0); `spectral_power` chooses its own (float32 at least).
    """
    if power == 0.0:
        return polar(M, steps=ns_steps, coefficients=coefficients, eps=eps, compute_dtype=compute_dtype)
    if power == 1.0:
        out = M
    else:  # the Gram route picks its own dtype: it squares κ, so it never runs in bf16
        out = spectral_power(M, power)
    rows, cols = M.shape[-2:]
    return out * (math.sqrt(min(rows, cols)) / (frobenius_norms(out) + eps))


class Muon(SpectralOptimizer):
    """Muon (momentum + polar factor) and its base × p family over real 2-D, conv and complex
    per-mode spectral parameters; options in `MUON` (lr, base, power, momentum,
    nesterov, adam_betas, adam_eps, weight_decay, ns_steps, coefficients, eps, adjust_lr, layout,
    compute_dtype) and the AdamW part's adamw_betas, adamw_eps for groups with use_spectral=False.
    `process_group`: share the spectral maps across its ranks (every rank must call `step` with
    the same, already averaged, gradients); None maps everything here.
    """

    OPTIONS = MUON + ADAMW_GROUP
    MAP_OPTIONS = ("power", "ns_steps", "coefficients", "eps", "compute_dtype")
    _spectral_map = staticmethod(spectral_map)  # the map piece, looked up per call (tests count its matrices)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float | None = None, *,
                 process_group: dist.ProcessGroup | None = None, **options: Any) -> None:
        super().__init__(params, lr, process_group=process_group, **options)
        for group in self.param_groups:
            group["power"] = float(group["power"])

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Groups saved before the family options existed load as Muon's (momentum, p = 0); before the
        adam base had its own betas and eps, it used the AdamW part's."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("base", "momentum")
            group.setdefault("power", 0.0)
            group.setdefault("adam_betas", group.get("adamw_betas", (0.9, 0.999)))
            group.setdefault("adam_eps", group.get("adamw_eps", 1e-8))

    def direction(self, grads: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> list[Tensor]:
        return BASE_DIRECTIONS[group["base"]](grads, states, group)

    def map_work(self, M: Tensor, items: list[Item], context: Any) -> Work:
        group = items[0][1]
        rows, cols = M.shape[-2:]
        settings = {name: group[name] for name in self.MAP_OPTIONS}
        return Work(inputs=(M,), fn=lambda X: (self._spectral_map(X, **settings),), outputs=(((rows, cols), M.dtype),),
                    cost=map_cost(rows, cols, M.dtype.is_complex, group["power"], group["ns_steps"]))
