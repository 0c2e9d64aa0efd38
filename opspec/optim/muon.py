"""Muon and its U Σ^p Vᴴ family for real and complex parameters of any layout, one batched call per shape group.

Per spectral parameter, each step (Muon: the torch.optim.Muon conventions):

    base "momentum" (mSGD family, Muon's):
        B ← μB + (1 − μ)G                   (momentum as an EMA; `buf.lerp_(G, 1 − μ)`)
        D ← (1 − μ)G + μB  if nesterov else B
    base "adam" (Adam family; β₁, β₂ = adamw_betas, ε = adamw_eps, t = step count):
        m ← β₁m + (1 − β₁)G,  v ← β₂v + (1 − β₂)G²   (complex: per real and imaginary part)
        D ← m̂ / (√v̂ + ε),  m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)
    O ← Ψ_p(D) per matrix of the parameter's layout (per Fourier mode for spectral weights):
        p = 0: polar(D) = U Vᴴ by Newton–Schulz (Muon);  p = 1/4, 1/2: U Σ^p Vᴴ (`spectral_power`);
        p = 1: D itself.  For p > 0 each matrix is rescaled to ‖O‖_F = √min(rows, cols), the
        norm of a full-rank polar factor, so the LR rules and learning rates carry over across p.
    θ ← (1 − γλ)θ − γ·scale(rows, cols)·O   (decoupled weight decay, shape-based LR rule)

Muon is the (momentum, p = 0) member, the default. All matrices of the same (rows, cols, dtype,
device) across parameters are stacked and mapped in one batched call. Parameters in a group with
`use_spectral=False` take an AdamW step instead (complex-safe), so one optimizer object serves a
whole model. With a `process_group` (data-parallel training, gradients already averaged) each rank
maps only its cost-balanced share of the matrices and the results are gathered (`sharding.py`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim import Optimizer

from opspec.optim.adamw import adam_directions, adamw_group_step
from opspec.optim.layouts import LAYOUTS, from_matrices, infer_layout, to_matrices
from opspec.optim.polar import COEFFICIENT_SETS, frobenius_norms, polar
from opspec.optim.sharding import Work, run_sharded
from opspec.optim.spectral_power import DEFAULT_STEPS, POWERS, spectral_power

LR_RULES = ("original", "match_rms_adamw", "none")
BASES = ("momentum", "adam")


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


def lr_scale(rows: int, cols: int, rule: str) -> float:
    """Shape rule for the step size: √max(1, rows/cols) ("original") or 0.2·√max(rows, cols) ("match_rms_adamw")."""
    if rule == "original":
        return math.sqrt(max(1.0, rows / cols))
    if rule == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    if rule == "none":
        return 1.0
    raise ValueError(f"adjust_lr: expected one of {LR_RULES}, got {rule!r}")


class Muon(Optimizer):
    """Muon (momentum + polar factor) and its base × p family over real 2-D, conv and complex
    per-mode spectral parameters.

    Group options: lr, base ("momentum" or "adam"), power (p: 0, 0.25, 0.5 or 1), momentum,
    nesterov, weight_decay, ns_steps, coefficients ("quintic",
    "polar_express" or a list of (a, b, c)), eps, adjust_lr ("original", "match_rms_adamw",
    "none"), layout ("auto" or one of `LAYOUTS`), compute_dtype (of the Newton–Schulz matmuls;
    None: bf16 on CUDA and on CPUs with bf16 hardware, else float32), use_spectral (False: AdamW with adamw_betas, adamw_eps, the group's lr and weight_decay).
    `process_group`: share the spectral maps across its ranks (every rank must call `step` with
    the same, already averaged, gradients); None maps everything here.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        base: str = "momentum",
        power: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        coefficients: str | list[tuple[float, float, float]] = "quintic",
        eps: float = 1e-7,
        adjust_lr: str = "original",
        layout: str = "auto",
        compute_dtype: torch.dtype | None = None,
        use_spectral: bool = True,
        adamw_betas: tuple[float, float] = (0.9, 0.999),
        adamw_eps: float = 1e-8,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"Muon: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if adjust_lr not in LR_RULES:
            raise ValueError(f"Muon: adjust_lr must be one of {LR_RULES}, got {adjust_lr!r}")
        if base not in BASES:
            raise ValueError(f"Muon: base must be one of {BASES}, got {base!r}")
        if power not in POWERS:
            raise ValueError(f"Muon: power must be one of {POWERS}, got {power!r}")
        if isinstance(coefficients, str) and coefficients not in COEFFICIENT_SETS:
            raise ValueError(f"Muon: coefficients must be one of {COEFFICIENT_SETS} or a list of (a, b, c), got {coefficients!r}")
        defaults = dict(
            lr=lr, base=base, power=float(power), momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps,
            coefficients=coefficients, eps=eps, adjust_lr=adjust_lr, layout=layout, compute_dtype=compute_dtype,
            use_spectral=use_spectral, adamw_betas=adamw_betas, adamw_eps=adamw_eps,
        )
        super().__init__(params, defaults)
        self.process_group = process_group
        self._check_layouts(self.param_groups)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Groups saved before the family options existed load as Muon's (momentum, p = 0)."""
        super().__setstate__(state)
        self.__dict__.setdefault("process_group", None)
        for group in self.param_groups:
            group.setdefault("base", "momentum")
            group.setdefault("power", 0.0)

    @classmethod
    def _check_layouts(cls, groups: list[dict[str, Any]]) -> None:
        """Refuse, at construction, a spectral parameter that has no matrix layout."""
        for group in groups:
            if group["use_spectral"]:
                for p in group["params"]:
                    cls._layout(p, group)

    @staticmethod
    def _layout(p: Tensor, group: dict[str, Any]) -> str:
        layout = group["layout"]
        if layout == "auto":
            inferred = infer_layout(p)
            if inferred is None:
                raise ValueError(
                    f"Muon: a parameter of shape {tuple(p.shape)} has no matrix layout; put it in a group with "
                    "use_spectral=False (AdamW), or build the optimizer with opspec.optim.build_optimizer"
                )
            return inferred
        if layout not in LAYOUTS:
            raise ValueError(f"Muon: layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
        return layout

    def _momentum_directions(self, params: list[Tensor], group: dict[str, Any]) -> list[Tensor]:
        """Muon's base: the EMA momentum buffer, or its Nesterov look-ahead, in two foreach calls."""
        grads = [p.grad for p in params]
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        momentum = group["momentum"]
        torch._foreach_lerp_(bufs, grads, 1 - momentum)
        return torch._foreach_lerp(grads, bufs, momentum) if group["nesterov"] else bufs

    def _adam_directions(self, params: list[Tensor], group: dict[str, Any]) -> list[Tensor]:
        """The Adam family's base: m̂ / (√v̂ + ε), second moments per real entry (as torch's AdamW)."""
        return adam_directions([p.grad for p in params], [self.state[p] for p in params], group["adamw_betas"], group["adamw_eps"])

    @staticmethod
    def _spectral_map(mats: Tensor, power: float, steps: int, coefficients: Any, eps: float, compute_dtype: Any) -> Tensor:
        """Ψ_p of every matrix in the batch; for p > 0 rescaled to the Frobenius norm √min(rows, cols).

        `compute_dtype` is Newton–Schulz's (p = 0); `spectral_power` chooses its own (float32 at least).
        """
        if power == 0.0:
            return polar(mats, steps=steps, coefficients=coefficients, eps=eps, compute_dtype=compute_dtype)
        if power == 1.0:
            out = mats
        else:  # the Gram route picks its own dtype: it squares κ, so it never runs in bf16
            out = spectral_power(mats, power)
        rows, cols = mats.shape[-2:]
        return out * (math.sqrt(min(rows, cols)) / (frobenius_norms(out) + eps))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        buckets: dict[tuple, list[tuple[Tensor, dict[str, Any], str, Tensor]]] = defaultdict(list)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not group["use_spectral"]:
                adamw_group_step(params, [self.state[p] for p in params], group)
                continue
            if not params:
                continue
            if group["base"] == "adam":
                directions = self._adam_directions(params, group)
            else:
                directions = self._momentum_directions(params, group)
            coefficients = group["coefficients"]
            for p, direction in zip(params, directions):
                layout = self._layout(p, group)
                mats = to_matrices(direction, layout)
                key = (
                    tuple(mats.shape[-2:]), mats.dtype, mats.device, group["power"], group["ns_steps"],
                    coefficients if isinstance(coefficients, str) else tuple(map(tuple, coefficients)),
                    group["eps"], group["compute_dtype"],
                )
                buckets[key].append((p, group, layout, mats))
        works = []
        for ((rows, cols), dtype, _, power, *settings), items in buckets.items():
            stacked = torch.cat([mats for *_, mats in items]) if len(items) > 1 else items[0][3]
            works.append(Work(
                inputs=(stacked,),
                fn=lambda mats, power=power, settings=settings: (self._spectral_map(mats, power, *settings),),
                outputs=(((rows, cols), dtype),),
                cost=map_cost(rows, cols, dtype.is_complex, power, settings[0]),
            ))
        for items, (mapped,) in zip(buckets.values(), run_sharded(works, self.process_group)):
            for (p, group, layout, mats), o in zip(items, mapped.split([m.shape[0] for *_, m in items])):
                rows, cols = mats.shape[-2:]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(from_matrices(o, layout, tuple(p.shape)), alpha=-group["lr"] * lr_scale(rows, cols, group["adjust_lr"]))
        return loss
