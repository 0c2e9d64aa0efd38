"""SpecMuon: Muon geometry with mode-wise relaxed-SAV step control on the top singular modes.

Each spectral matrix G (per Fourier mode for FNO weights) keeps one auxiliary scalar r_j for each of
its k guided modes (its k largest singular triplets). With E = √(ℓ + C), ℓ the loss energy (an EMA
of the closure's loss, or the mean of its last n values), γ = lr·scale(fan_out, fan_in) and σ_j the j-th singular value of G:

    Ĝ = G / ‖G‖_F = Σ_j s_j u_j v_jᴴ                      (s_j = σ_j / ‖G‖_F)
    r̃_j = r_j / (1 + γ σ_j / (2E²))                     (semi-implicit SAV shrink: r̃_j ≤ r_j)
    T_j = (1 − ξ) r̃_j² + ξ r_j²                          (target: r̃_j² ≤ T_j ≤ r_j²)
    r_j ← χ_j r̃_j + (1 − χ_j) E, χ_j the smallest in [0, 1] with r_j² ≤ T_j
        = min(E, √T_j)                                    (χ_j = 0 if E ≤ √T_j, else (E − √T_j)/(E − r̃_j))
    O = polar(Ĝ) + Σ_{j≤k} (r̃_j / E − u_jᴴ polar(Ĝ) v_j) u_j v_jᴴ
                                                          (guided modes at r̃_j / E, the rest Muon's)
    B ← μB + O;   θ ← (1 − γ₀λ)θ − γ B                    (γ₀ = lr)

so every r_j, hence the modified energy Σ r_j², never increases (docs/specmuon.md derives every
line and names the choices the paper left open). The top-k triplets come from a batched SVD ("svd")
or from block subspace iteration warm-started from the previous step's subspace ("subspace", the
default). SpecMuon is the step skeleton (step.py) with the raw gradient as direction, this guided
polar map with its step control (`sav_shrink`, `relax`, `guided_map`) and a heavy ball after the map.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from opspec.optim.apply import heavy_ball, lr_scale
from opspec.optim.directions import gradient_direction
from opspec.optim.layouts import fans
from opspec.optim.muon import map_cost
from opspec.optim.options import ADAMW_GROUP, SPECMUON, TOPK_METHODS
from opspec.optim.polar import frobenius_norms, polar
from opspec.optim.sharding import Work
from opspec.optim.step import Item, SpectralOptimizer

__all__ = ["ENERGY_KEY", "TOPK_METHODS", "SpecMuon", "guided_map", "relax", "sav_shrink", "top_singular_triplets"]

ENERGY_KEY = "loss_energy"  # optimizer-wide state: the loss EMA behind E = √(ℓ + C)


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


def sav_shrink(r: Tensor, sigma: Tensor, gamma: float, energy: float) -> Tensor:
    """r̃ = r / (1 + γσ / (2E²)): the semi-implicit SAV step of r along a mode with singular value σ."""
    return r / (1 + gamma * sigma / (2 * energy**2))


def relax(r: Tensor, r_tilde: Tensor, energy: float, xi: float) -> tuple[Tensor, Tensor]:
    """(r⁺, χ): r⁺ = χ r̃ + (1 − χ) E with χ the smallest in [0, 1] such that r⁺² ≤ T = (1 − ξ) r̃² + ξ r².

    r̃ ≤ √T ≤ r, so: E ≤ √T → χ = 0, r⁺ = E (E below r̃ included); E > √T → χ = (E − √T)/(E − r̃),
    r⁺ = √T. Either way r⁺ = min(E, √T) ≤ r; the code also takes min(·, r), so rounding in T cannot
    raise r.
    """
    root_t = ((1 - xi) * r_tilde**2 + xi * r**2).sqrt()
    above = energy > root_t
    chi = torch.where(above, (energy - root_t) / (energy - r_tilde).clamp_min(torch.finfo(r.dtype).tiny), 0.0).clamp(0, 1)
    r_new = torch.minimum(torch.where(above, root_t, torch.full_like(r, energy)), r)
    return r_new, chi


def guided_map(G: Tensor, r: Tensor, basis: Tensor | None, group: dict[str, Any], k: int, gamma: float,
               energy: float) -> tuple[Tensor, ...]:
    """(O, r⁺[, basis]) for a batch of matrices: the SAV shrink and relaxation of r, and the polar
    factor with its guided modes set to r̃ / E. Each matrix alone: shares may run anywhere."""
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
    r_tilde = sav_shrink(r, sigma, gamma, energy)
    r_relaxed, _ = relax(r, r_tilde, energy, group["relaxation"])
    r_new = torch.where(live, r_relaxed, r)
    O = polar(G_hat, steps=group["ns_steps"], coefficients=group["coefficients"], eps=eps,
              compute_dtype=group["compute_dtype"])
    # replace what Newton–Schulz left on each live guided mode, uᴴ O v, by r̃ / E exactly
    on_mode = (U.conj() * (O @ V)).sum(dim=-2).real
    weight = torch.where(live, r_tilde / energy - on_mode, 0.0).to(U.dtype)
    O = O + (U * weight.unsqueeze(-2)) @ V.mH
    return (O, r_new) if group["topk"] == "svd" else (O, r_new, basis)


class SpecMuon(SpectralOptimizer):
    """Muon with mode-wise relaxed-SAV step control; needs the loss: call `step(closure)`.

    Options: `opspec.optim.options.SPECMUON` (the skeleton's lr, momentum μ, weight_decay, eps ε,
    adjust_lr, layout, ns_steps, coefficients, compute_dtype, and its own guided_modes k,
    relaxation ξ, energy_shift C, loss_ema, energy_window, topk, subspace_iters), plus adamw_betas, adamw_eps for
    groups with use_spectral=False. `process_group`: share the per-matrix work across its ranks, as
    in `Muon`; the closure's loss must then be the global one.
    """

    OPTIONS = SPECMUON + ADAMW_GROUP
    MAP_OPTIONS = ("lr", "adjust_lr", "guided_modes", "relaxation", "topk", "subspace_iters", "eps", "ns_steps",
                   "coefficients", "compute_dtype")

    def __init__(self, params: Any, lr: float | None = None, **options: Any) -> None:
        super().__init__(params, lr, **options)
        if len({(g["energy_shift"], g["loss_ema"], g["energy_window"]) for g in self.param_groups}) > 1:
            raise ValueError("SpecMuon: energy_shift, loss_ema and energy_window set the one loss energy E; "
                             "they must agree across groups")

    def _energy(self, loss: float) -> float:
        """E = √(ℓ + C) with ℓ the bias-corrected EMA of the losses seen so far (the loss itself if β = 0),
        or with energy_window = n, the mean of the last n losses (fewer at the start)."""
        group = self.param_groups[0]
        beta, shift, window = group["loss_ema"], group["energy_shift"], group["energy_window"]
        state = self.state[ENERGY_KEY]
        if not state:
            state["ema"] = torch.zeros((), dtype=torch.float64)
            state["count"] = torch.zeros((), dtype=torch.int64)
        state["count"] += 1
        count = int(state["count"].item())
        if window:
            recent = state.setdefault("recent", torch.zeros(window, dtype=torch.float64))
            recent[(count - 1) % window] = loss
            ell = recent[: min(count, window)].mean().item()
        else:
            state["ema"].mul_(beta).add_((1 - beta) * loss)
            ell = (state["ema"] / (1 - beta**count)).item()
        if ell + shift <= 0:
            raise ValueError(f"SpecMuon: loss energy {ell} + energy_shift {shift} must be positive; raise energy_shift")
        return math.sqrt(ell + shift)

    def modified_energy(self) -> float:
        """Σ r_j² over every guided mode of every matrix: non-increasing from step to step."""
        return sum(float((st["r"].double() ** 2).sum()) for st in self.state.values() if isinstance(st, dict) and "r" in st)

    def begin(self, closure: Callable[[], Tensor] | None) -> tuple[Tensor, float]:
        """The loss from the closure (required) and the step's loss energy E."""
        if closure is None:
            raise ValueError(
                "SpecMuon.step needs the loss: call optimizer.step(closure) with a closure that returns it, or, "
                "after loss.backward(), optimizer.step(lambda: loss); a loop that calls step() with no arguments "
                "(neuralop's Trainer) cannot pass it, so use muon there"
            )
        with torch.enable_grad():
            loss = closure()
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        if not math.isfinite(value):
            raise ValueError(f"SpecMuon: the closure returned a non-finite loss ({value})")
        return loss, self._energy(value)

    def direction(self, grads: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> list[Tensor]:
        return gradient_direction(grads, states)

    def map_work(self, G: Tensor, items: list[Item], energy: float) -> Work:
        """The guided map of one bucket, its r (and warm-start basis) stacked from the parameters' state."""
        _, group, layout, _ = items[0]
        rows, cols = G.shape[-2:]
        k = min(group["guided_modes"], rows, cols)
        sizes = [M.shape[0] for *_, M in items]
        states = [self.state[p] for p, *_ in items]
        real = G.real.dtype
        for st, size in zip(states, sizes):
            st.setdefault("r", torch.full((size, k), energy, dtype=real, device=G.device))
        r = torch.cat([st["r"] for st in states]) if len(states) > 1 else states[0]["r"]
        warm = group["topk"] == "subspace" and all("basis" in st for st in states)
        inputs = (G, r, torch.cat([st["basis"] for st in states])) if warm else (G, r)
        outputs = [((rows, cols), G.dtype), ((k,), real)]
        if group["topk"] == "subspace":
            outputs.append(((rows, k), G.dtype))
        gamma = group["lr"] * lr_scale(*fans(rows, cols, layout), group["adjust_lr"])
        subspace = 4 * group["subspace_iters"] * rows * cols * k
        cost = map_cost(rows, cols, G.is_complex(), 0.0, group["ns_steps"]) + (4 if G.is_complex() else 1) * subspace

        def fn(G: Tensor, r: Tensor, basis: Tensor | None = None) -> tuple[Tensor, ...]:
            return guided_map(G, r, basis, group, k, gamma, energy)

        return Work(inputs=inputs, fn=fn, outputs=tuple(outputs), cost=cost)

    def finish(self, items: list[Item], outputs: tuple[Tensor, ...]) -> Tensor:
        """Store r (and the subspace basis) per parameter; O for the update."""
        O, r_new, *basis = outputs
        sizes = [M.shape[0] for *_, M in items]
        states = [self.state[p] for p, *_ in items]
        for st, piece in zip(states, r_new.split(sizes)):
            st["r"] = piece.clone()
        if basis:
            for st, piece in zip(states, basis[0].split(sizes)):
                st["basis"] = piece.clone()
        return O

    def after_map(self, p: Tensor, update: Tensor, group: dict[str, Any]) -> Tensor:
        """Heavy ball after the map: B ← μB + O."""
        return heavy_ball(self.state[p], update, group["momentum"])
