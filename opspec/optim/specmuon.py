"""SpecMuon: Muon geometry with mode-wise relaxed-SAV step control on the top singular modes.

Each spectral matrix G (per Fourier mode for FNO weights) keeps one auxiliary scalar r_j for each of
its k guided modes (its k largest singular triplets). With E = √(ℓ + C), ℓ the loss energy (an EMA
of the closure's loss), γ = lr·scale(rows, cols) and σ_j the j-th singular value of G:

    Ĝ = G / ‖G‖_F = Σ_j s_j u_j v_jᴴ                      (s_j = σ_j / ‖G‖_F)
    r̃_j = r_j / (1 + γ σ_j / (2E²))                     (semi-implicit SAV shrink: r̃_j ≤ r_j)
    T_j = (1 − ξ) r̃_j² + ξ r_j²                          (target: r̃_j² ≤ T_j ≤ r_j²)
    χ_j = clamp((E − √T_j) / (E − r̃_j + ε), 0, 1)
    r_j ← χ_j r̃_j + (1 − χ_j) E                          (relax towards E while r_j² ≤ T_j)
    O = polar(Ĝ) + Σ_{j≤k} (r̃_j / E − u_jᴴ polar(Ĝ) v_j) u_j v_jᴴ
                                                          (guided modes at r̃_j / E, the rest Muon's)
    B ← μB + O;   θ ← (1 − γ₀λ)θ − γ B                    (γ₀ = lr)

so the modified energy Σ r_j² never increases (docs/specmuon.md derives every line and names the
choices the paper left open). The top-k triplets come from a batched SVD ("svd") or from block
subspace iteration warm-started from the previous step's subspace ("subspace", the default).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim import Optimizer

from opspec.optim.adamw import adamw_group_step
from opspec.optim.layouts import from_matrices, to_matrices
from opspec.optim.muon import LR_RULES, Muon, lr_scale, map_cost
from opspec.optim.polar import frobenius_norms, polar
from opspec.optim.sharding import Work, run_sharded

TOPK_METHODS = ("subspace", "svd")
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


class SpecMuon(Optimizer):
    """Muon with mode-wise relaxed-SAV step control; needs the loss: call `step(closure)`.

    Group options: lr, momentum (μ), guided_modes (k), relaxation (ξ), energy_shift (C), loss_ema
    (β of the loss EMA; 0 uses the batch loss), topk ("subspace" or "svd"), subspace_iters,
    weight_decay, eps (ε), adjust_lr, layout, ns_steps, coefficients, compute_dtype (polar of the
    unguided modes), use_spectral (False: AdamW with adamw_betas, adamw_eps). `process_group`: share
    the per-matrix work across its ranks, as in `Muon`; the closure's loss must then be the global one.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.9,
        guided_modes: int = 6,
        relaxation: float = 0.2,
        energy_shift: float = 1.0,
        loss_ema: float = 0.9,
        topk: str = "subspace",
        subspace_iters: int = 1,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        adjust_lr: str = "original",
        layout: str = "auto",
        ns_steps: int = 5,
        coefficients: str | list[tuple[float, float, float]] = "quintic",
        compute_dtype: torch.dtype | None = None,
        use_spectral: bool = True,
        adamw_betas: tuple[float, float] = (0.9, 0.999),
        adamw_eps: float = 1e-8,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"SpecMuon: need lr >= 0, 0 <= momentum < 1, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        if guided_modes < 1 or subspace_iters < 1:
            raise ValueError(f"SpecMuon: guided_modes and subspace_iters must be >= 1, got {guided_modes}, {subspace_iters}")
        if not 0 <= relaxation <= 1 or not 0 <= loss_ema < 1 or energy_shift < 0:
            raise ValueError(
                f"SpecMuon: need 0 <= relaxation <= 1, 0 <= loss_ema < 1, energy_shift >= 0; got {relaxation}, {loss_ema}, {energy_shift}"
            )
        if topk not in TOPK_METHODS:
            raise ValueError(f"SpecMuon: topk must be one of {TOPK_METHODS}, got {topk!r}")
        if adjust_lr not in LR_RULES:
            raise ValueError(f"SpecMuon: adjust_lr must be one of {LR_RULES}, got {adjust_lr!r}")
        defaults = dict(
            lr=lr, momentum=momentum, guided_modes=guided_modes, relaxation=relaxation, energy_shift=energy_shift,
            loss_ema=loss_ema, topk=topk, subspace_iters=subspace_iters, weight_decay=weight_decay, eps=eps,
            adjust_lr=adjust_lr, layout=layout, ns_steps=ns_steps, coefficients=coefficients,
            compute_dtype=compute_dtype, use_spectral=use_spectral, adamw_betas=adamw_betas, adamw_eps=adamw_eps,
        )
        super().__init__(params, defaults)
        self.process_group = process_group
        if len({(g["energy_shift"], g["loss_ema"]) for g in self.param_groups}) > 1:
            raise ValueError("SpecMuon: energy_shift and loss_ema set the one loss energy E; they must agree across groups")
        Muon._check_layouts(self.param_groups)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("process_group", None)  # not pickled: a group belongs to one job

    def _energy(self, loss: float) -> float:
        """E = √(ℓ + C) with ℓ the bias-corrected EMA of the losses seen so far (the loss itself if β = 0)."""
        group = self.param_groups[0]
        beta, shift = group["loss_ema"], group["energy_shift"]
        state = self.state[ENERGY_KEY]
        if not state:
            state["ema"] = torch.zeros((), dtype=torch.float64)
            state["count"] = torch.zeros((), dtype=torch.int64)
        state["count"] += 1
        state["ema"].mul_(beta).add_((1 - beta) * loss)
        ell = (state["ema"] / (1 - beta ** state["count"].item())).item()
        if ell + shift <= 0:
            raise ValueError(f"SpecMuon: loss energy {ell} + energy_shift {shift} must be positive; raise energy_shift")
        return math.sqrt(ell + shift)

    def modified_energy(self) -> float:
        """Σ r_j² over every guided mode of every matrix: non-increasing from step to step."""
        return sum(float((st["r"].double() ** 2).sum()) for st in self.state.values() if isinstance(st, dict) and "r" in st)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        if closure is None:
            raise ValueError("SpecMuon.step needs the loss: call optimizer.step(closure) with a closure that returns it")
        with torch.enable_grad():
            loss = closure()
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        if not math.isfinite(value):
            raise ValueError(f"SpecMuon: the closure returned a non-finite loss ({value})")
        energy = self._energy(value)
        buckets: dict[tuple, list[tuple[Tensor, dict[str, Any], str, Tensor]]] = defaultdict(list)
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not group["use_spectral"]:
                adamw_group_step(params, [self.state[p] for p in params], group)
                continue
            for p in params:
                layout = Muon._layout(p, group)
                mats = to_matrices(p.grad, layout)
                buckets[(tuple(mats.shape[-2:]), mats.dtype, mats.device, index)].append((p, group, layout, mats))
        works = [self._step_bucket(items, energy) for items in buckets.values()]
        for items, outputs in zip(buckets.values(), run_sharded(works, self.process_group)):
            self._apply_bucket(items, outputs)
        return loss

    def _step_bucket(self, items: list[tuple[Tensor, dict[str, Any], str, Tensor]], energy: float) -> Work:
        """The batched guided map for same-shape matrices of one group, as a `Work` that `step` shards."""
        group = items[0][1]
        rows, cols = items[0][3].shape[-2:]
        k = min(group["guided_modes"], rows, cols)
        G = torch.cat([mats for *_, mats in items]) if len(items) > 1 else items[0][3]
        sizes = [mats.shape[0] for *_, mats in items]
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
        gamma = group["lr"] * lr_scale(rows, cols, group["adjust_lr"])
        subspace = 4 * group["subspace_iters"] * rows * cols * k
        cost = map_cost(rows, cols, G.is_complex(), 0.0, group["ns_steps"]) + (4 if G.is_complex() else 1) * subspace

        def guided(G: Tensor, r: Tensor, basis: Tensor | None = None) -> tuple[Tensor, ...]:
            return self._guided_map(G, r, basis, group, k, gamma, energy)

        return Work(inputs=inputs, fn=guided, outputs=tuple(outputs), cost=cost)

    @staticmethod
    def _guided_map(G: Tensor, r: Tensor, basis: Tensor | None, group: dict[str, Any], k: int, gamma: float,
                    energy: float) -> tuple[Tensor, ...]:
        """(O, r_new[, basis]) for a batch of matrices: the SAV shrink and relaxation of r, and the
        polar factor with its guided modes set to r̃ / E. Each matrix alone: shares may run anywhere."""
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
        r_tilde = r / (1 + gamma * sigma / (2 * energy**2))
        target = (1 - group["relaxation"]) * r_tilde**2 + group["relaxation"] * r**2
        chi = ((energy - target.sqrt()) / (energy - r_tilde + eps)).clamp(0, 1)
        r_new = torch.where(live, chi * r_tilde + (1 - chi) * energy, r)
        O = polar(G_hat, steps=group["ns_steps"], coefficients=group["coefficients"], eps=eps,
                  compute_dtype=group["compute_dtype"])
        # replace what Newton–Schulz left on each live guided mode, uᴴ O v, by r̃ / E exactly
        on_mode = (U.conj() * (O @ V)).sum(dim=-2).real
        weight = torch.where(live, r_tilde / energy - on_mode, 0.0).to(U.dtype)
        O = O + (U * weight.unsqueeze(-2)) @ V.mH
        return (O, r_new) if group["topk"] == "svd" else (O, r_new, basis)

    def _apply_bucket(self, items: list[tuple[Tensor, dict[str, Any], str, Tensor]], outputs: tuple[Tensor, ...]) -> None:
        """Store r (and the subspace basis), then the momentum and parameter update of each parameter."""
        O, r_new, *basis = outputs
        sizes = [mats.shape[0] for *_, mats in items]
        states = [self.state[p] for p, *_ in items]
        for st, piece in zip(states, r_new.split(sizes)):
            st["r"] = piece.clone()
        if basis:
            for st, piece in zip(states, basis[0].split(sizes)):
                st["basis"] = piece.clone()
        rows, cols = items[0][3].shape[-2:]
        for (p, group, layout, _), st, o in zip(items, states, O.split(sizes)):
            gamma = group["lr"] * lr_scale(rows, cols, group["adjust_lr"])
            update = from_matrices(o, layout, tuple(p.shape))
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = torch.zeros_like(p)
            buf = st["momentum_buffer"].mul_(group["momentum"]).add_(update)
            p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(buf, alpha=-gamma)
