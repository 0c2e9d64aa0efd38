"""SpecMuon: Muon geometry with mode-wise relaxed-SAV step control on the top singular modes.

Each spectral matrix G (per Fourier mode for FNO weights) has k guided modes, its k largest
singular triplets. With the step control's E = √(ℓ + C) and r̃_j (rsav.py: the loss energy, the
SAV shrink and relaxation of each mode's r_j), γ = lr·scale(fan_out, fan_in):

    Ĝ = G / ‖G‖_F = Σ_j s_j u_j v_jᴴ                      (s_j = σ_j / ‖G‖_F)
    O = polar(Ĝ) + Σ_{j≤k} (r̃_j / E − u_jᴴ polar(Ĝ) v_j) u_j v_jᴴ
                                                          (guided modes at r̃_j / E, the rest Muon's)
    B ← μB + O;   θ ← (1 − γ₀λ)θ − γ B                    (γ₀ = lr)

(docs/specmuon.md derives every line and names the choices the paper left open). The top-k
triplets come from a batched SVD ("svd") or from block subspace iteration warm-started from the
previous step's subspace ("subspace", the default). SpecMuon is the step skeleton (step.py) with
the raw gradient as direction, this guided polar map (`guided_map`), the relaxed-SAV step control
in the skeleton's control slot (`rsav.RelaxedSAV`) and a heavy ball after the map.

`momentum_placement="before"` (for mini-batches) moves the momentum in front of the map, as Muon
has it: G above is Muon's direction, B ← μB + (1 − μ)G_raw and (1 − μ)G_raw + μB with Nesterov
(`directions.momentum_direction`), so σ_j in the SAV shrink are its singular values, and θ moves
by γ O with no heavy ball. Both placements keep their buffer in state["momentum_buffer"].
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from opspec.optim.apply import heavy_ball, lr_scale
from opspec.optim.directions import gradient_direction, momentum_direction
from opspec.optim.layouts import fans
from opspec.optim.muon import NESTEROV, map_cost
from opspec.optim.options import (ADAMW_GROUP, FRACTION, NON_NEGATIVE, SPECTRAL, Option, choice, integer_at_least,
                                  interval, with_defaults)
from opspec.optim.polar import frobenius_norms, polar
from opspec.optim.rsav import RelaxedSAV
from opspec.optim.sharding import Work
from opspec.optim.step import Item, SpectralOptimizer

__all__ = ["MOMENTUM_PLACEMENTS", "SPECMUON", "SPECMUON_OWN", "TOPK_METHODS", "SpecMuon", "guided_map",
           "top_singular_triplets"]

TOPK_METHODS = ("subspace", "svd")
MOMENTUM_PLACEMENTS = ("after", "before")
BASIS_KEY = "basis"  # per-parameter state: the warm start of the subspace iteration

SPECMUON_OWN = (
    Option("guided_modes", int, 6, "k: top singular modes per matrix under step control", integer_at_least(1)),
    Option("relaxation", float, 0.2, "ξ: r² may relax up to (1 − ξ)r̃² + ξr²; 0 keeps r ≤ r̃, 1 allows r ≤ r_prev",
           interval(0.0, 1.0)),
    Option("energy_shift", float, 1.0, "C in E = √(ℓ + C)", NON_NEGATIVE),
    Option("loss_ema", float, 0.9, "β of the loss EMA ℓ; 0: the batch loss", FRACTION),
    Option("energy_window", int, 0, "ℓ = the plain mean of the last n batch losses (n = steps per epoch: a "
           "whole-data loss minibatch noise does not drive; 1 at full batch: the paper's E); 0: the EMA loss_ema",
           integer_at_least(0)),
    choice("topk", "subspace", "top-k triplets by warm-started subspace iteration | batched svd", TOPK_METHODS),
    Option("subspace_iters", int, 1, "subspace iterations per step (4 at a cold start)", integer_at_least(1)),
    choice("momentum_placement", "after", "after: the raw gradient into the map, heavy ball B ← μB + O after it (the "
           "paper's; full batch) | before: Muon's EMA momentum (nesterov) into the map, no heavy ball (mini-batch; "
           "about (1 − μ)⁻¹ times after's lr)", MOMENTUM_PLACEMENTS),
    NESTEROV,
)
SPECMUON = with_defaults(SPECTRAL, momentum=0.9, spectral_eps=1e-8) + SPECMUON_OWN


def top_singular_triplets(
    G: Tensor, k: int, basis: Tensor | None = None, iters: int = 1
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(U_k, s_k, V_k, basis) of a batch G (B, m, n) by block subspace iteration on G Gᴴ.

    `basis` (B, m, k) warm-starts the iteration (the previous step's left subspace); without it a
    fixed Gaussian block starts it and `iters` is raised to 4. Rayleigh–Ritz on the subspace then
    gives the triplets: an SVD of the small (k × n) matrix Qᴴ G.
    """
    B, m, n = G.shape
    if basis is None:
        start = torch.randn(n, k, generator=torch.Generator().manual_seed(0), dtype=G.real.dtype).to(G.device, G.dtype)
        basis = torch.linalg.qr(G @ start).Q
        iters = max(iters, 4)
    for _ in range(iters):
        basis = torch.linalg.qr(G @ (G.mH @ basis)).Q
    Uw, s, Vh = torch.linalg.svd(basis.mH @ G, full_matrices=False)
    return basis @ Uw, s, Vh.mH, basis


def guided_map(G: Tensor, r: Tensor, basis: Tensor | None, group: dict[str, Any], k: int,
               control: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]) -> tuple[Tensor, ...]:
    """(O, r⁺[, basis]) for a batch of matrices: the polar factor with its guided modes set to the step
    control's scale, `control(r, σ, live)` → (scale, r⁺). Each matrix alone: shares may run anywhere."""
    rows, cols = G.shape[-2:]
    eps = group["eps"]
    norm = frobenius_norms(G)
    G_hat = G / (norm + eps)
    if group["topk"] == "svd":
        U, s, Vh = torch.linalg.svd(G_hat, full_matrices=False)
        U, s, V = U[..., :k], s[..., :k], Vh[..., :k, :].mH
    else:
        U, s, V, basis = top_singular_triplets(G_hat, k, basis, group["subspace_iters"])
    # singular values at float32 rounding level are the null space: their vectors are arbitrary
    live = s > max(rows, cols) * torch.finfo(s.dtype).eps * s[..., :1]
    sigma = s * norm.view(-1, 1).to(s.dtype)
    scale, r_new = control(r, sigma, live)
    O = polar(G_hat, steps=group["ns_steps"], coefficients=group["coefficients"], eps=eps,
              compute_dtype=group["compute_dtype"])
    # replace what Newton–Schulz left on each live guided mode, uᴴ O v, by the control's scale exactly
    on_mode = (U.conj() * (O @ V)).sum(dim=-2).real
    weight = torch.where(live, scale - on_mode, 0.0).to(U.dtype)
    O = O + (U * weight.unsqueeze(-2)) @ V.mH
    return (O, r_new) if group["topk"] == "svd" else (O, r_new, basis)


class SpecMuon(SpectralOptimizer):
    """Muon with mode-wise relaxed-SAV step control; needs the loss: call `step(closure)`.

    Options: `SPECMUON` (the skeleton's lr, momentum μ, weight_decay, eps ε, adjust_lr, layout,
    ns_steps, coefficients, compute_dtype, and its own guided_modes k, relaxation ξ, energy_shift C,
    loss_ema, energy_window, topk, subspace_iters, momentum_placement, nesterov), plus adamw_betas, adamw_eps for
    groups with use_spectral=False.
    `process_group`: share the per-matrix work across its ranks, as in `Muon`; the closure's loss
    must then be the global one.
    """

    OPTIONS = SPECMUON + ADAMW_GROUP
    MAP_OPTIONS = ("lr", "adjust_lr", "guided_modes", "relaxation", "topk", "subspace_iters", "eps", "ns_steps",
                   "coefficients", "compute_dtype")
    control = RelaxedSAV()

    def __init__(self, params: Any, lr: float | None = None, **options: Any) -> None:
        super().__init__(params, lr, **options)
        if len({(g["energy_shift"], g["loss_ema"], g["energy_window"]) for g in self.param_groups}) > 1:
            raise ValueError("SpecMuon: energy_shift, loss_ema and energy_window set the one loss energy E; "
                             "they must agree across groups")

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Groups saved before momentum_placement existed load as the paper's (momentum after the map)."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("momentum_placement", "after")
            group.setdefault("nesterov", True)

    def modified_energy(self) -> float:
        """Σ r_j² over every guided mode of every matrix: non-increasing from step to step."""
        key = self.control.matrix_key
        return sum(float((st[key].double() ** 2).sum()) for st in self.state.values() if isinstance(st, dict) and key in st)

    def direction(self, grads: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> list[Tensor]:
        """G itself ("after"), or Muon's EMA momentum of G with its Nesterov look-ahead ("before")."""
        if group["momentum_placement"] == "before":
            return momentum_direction(grads, states, group["momentum"], group["nesterov"])
        return gradient_direction(grads, states)

    def map_work(self, G: Tensor, items: list[Item], energy: float) -> Work:
        """The guided map of one bucket, its control state r (and warm-start basis) stacked from the parameters' state."""
        _, group, layout, _ = items[0]
        rows, cols = G.shape[-2:]
        k = min(group["guided_modes"], rows, cols)
        real = G.real.dtype
        control = self.control
        r = self.stacked(items, control.matrix_key, lambda size: control.initial(energy, (size, k), real, G.device))
        basis = self.stacked(items, BASIS_KEY) if group["topk"] == "subspace" else None
        inputs = (G, r) if basis is None else (G, r, basis)
        outputs = [((rows, cols), G.dtype), ((k,), real)]
        if group["topk"] == "subspace":
            outputs.append(((rows, k), G.dtype))
        gamma = group["lr"] * lr_scale(*fans(rows, cols, layout), group["adjust_lr"])
        subspace = 4 * group["subspace_iters"] * rows * cols * k
        cost = map_cost(rows, cols, G.is_complex(), 0.0, group["ns_steps"]) + (4 if G.is_complex() else 1) * subspace

        def scale(r: Tensor, sigma: Tensor, live: Tensor) -> tuple[Tensor, Tensor]:
            return control.scale(r, sigma, live, gamma, energy, group)

        def fn(G: Tensor, r: Tensor, basis: Tensor | None = None) -> tuple[Tensor, ...]:
            return guided_map(G, r, basis, group, k, scale)

        return Work(inputs=inputs, fn=fn, outputs=tuple(outputs), cost=cost)

    def finish(self, items: list[Item], outputs: tuple[Tensor, ...]) -> Tensor:
        """Store r (and the subspace basis) per parameter; O for the update."""
        O, r_new, *basis = outputs
        self.store_stacked(items, self.control.matrix_key, r_new)
        if basis:
            self.store_stacked(items, BASIS_KEY, basis[0])
        return O

    def after_map(self, p: Tensor, update: Tensor, group: dict[str, Any]) -> Tensor:
        """Heavy ball after the map, B ← μB + O ("after"); O itself when the momentum came before it."""
        if group["momentum_placement"] == "before":
            return update
        return heavy_ball(self.state[p], update, group["momentum"])
