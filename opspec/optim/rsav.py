"""SpecMuon's step control, mode-wise relaxed SAV: the step skeleton's control slot (`step.StepControl`).

Per step, the energy source turns the closure's loss into the loss energy ℓ (`LossEMA`: the
bias-corrected EMA of batch losses, β = `loss_ema`; β = 0 is the batch loss itself), and the
control's input is E = √(ℓ + C), C = `energy_shift`. Per matrix, each guided mode j (singular
value σ_j of the raw gradient) keeps an auxiliary scalar r_j (first E), and with γ the matrix's
step size and ξ = `relaxation`:

    r̃_j = r_j / (1 + γ σ_j / (2E²))                     (semi-implicit SAV shrink: r̃_j ≤ r_j)
    T_j = (1 − ξ) r̃_j² + ξ r_j²                          (target: r̃_j² ≤ T_j ≤ r_j²)
    r_j ← χ_j r̃_j + (1 − χ_j) E, χ_j the smallest in [0, 1] with r_j² ≤ T_j  = min(E, √T_j)
    scale_j = r̃_j / E                                    (the guided mode's size in the update)

so every r_j, hence the modified energy Σ r_j², never increases (docs/specmuon.md). The energy
source is a separate input (`RelaxedSAV(energy=...)`): a variant that feeds r another loss value
is one more source. State: `optimizer.state["loss_energy"]` (the EMA and its count) and each
parameter's `state[p]["r"]`, the keys of every checkpoint so far.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = ["ENERGY_KEY", "EnergySource", "LossEMA", "RelaxedSAV", "relax", "sav_shrink"]

ENERGY_KEY = "loss_energy"  # optimizer-wide state: the energy source's (the loss EMA behind E = √(ℓ + C))
R_KEY = "r"  # per-parameter state: one r_j per guided mode of each of its matrices


class EnergySource(Protocol):
    """What loss value feeds r: the loss energy ℓ of this step from the closure's loss, keeping its state in `state`."""

    def __call__(self, loss: float, state: dict[str, Any], group: dict[str, Any]) -> float: ...


class LossEMA:
    """ℓ = the bias-corrected EMA of the losses seen so far, β = `loss_ema` (the loss itself if β = 0);
    with `energy_window` = n > 0, the plain mean of the last n losses (fewer at the start) instead."""

    def __call__(self, loss: float, state: dict[str, Any], group: dict[str, Any]) -> float:
        beta, window = group["loss_ema"], group.get("energy_window", 0)
        if not state:
            state["ema"] = torch.zeros((), dtype=torch.float64)
            state["count"] = torch.zeros((), dtype=torch.int64)
        state["count"] += 1
        count = int(state["count"].item())
        if window:
            recent = state.setdefault("recent", torch.zeros(window, dtype=torch.float64))
            recent[(count - 1) % window] = loss
            return recent[: min(count, window)].mean().item()
        state["ema"].mul_(beta).add_((1 - beta) * loss)
        return (state["ema"] / (1 - beta**count)).item()


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


class RelaxedSAV:
    """The relaxed-SAV step control: E from the loss (`begin`), r̃ / E per guided mode and r⁺ (`scale`)."""

    key = ENERGY_KEY
    matrix_key = R_KEY

    def __init__(self, energy: EnergySource | None = None) -> None:
        self.energy = LossEMA() if energy is None else energy

    def begin(self, loss: Any, state: dict[Any, Any], group: dict[str, Any]) -> float:
        """E = √(ℓ + C) of this step, ℓ from the energy source; the loss is required and must be finite."""
        if loss is None:
            raise ValueError(
                "SpecMuon.step needs the loss: call optimizer.step(closure) with a closure that returns it, or, "
                "after loss.backward(), optimizer.step(lambda: loss); a loop that calls step() with no arguments "
                "(neuralop's Trainer) cannot pass it, so use muon there"
            )
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        if not math.isfinite(value):
            raise ValueError(f"SpecMuon: the closure returned a non-finite loss ({value})")
        ell = self.energy(value, state[self.key], group)
        shift = group["energy_shift"]
        if ell + shift <= 0:
            raise ValueError(f"SpecMuon: loss energy {ell} + energy_shift {shift} must be positive; raise energy_shift")
        return math.sqrt(ell + shift)

    def initial(self, context: float, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """r = E for modes seen for the first time."""
        return torch.full(shape, context, dtype=dtype, device=device)

    def scale(self, state: Tensor, sigma: Tensor, live: Tensor, gamma: float, context: float,
              group: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """(r̃ / E, r⁺) per guided mode; a mode that is not live keeps its r."""
        r_tilde = sav_shrink(state, sigma, gamma, context)
        r_relaxed, _ = relax(state, r_tilde, context, group["relaxation"])
        return r_tilde / context, torch.where(live, r_relaxed, state)
