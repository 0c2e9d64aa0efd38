"""Batched Newton–Schulz polar factor polar(G) = U Vᴴ for G = U Σ Vᴴ, real or complex.

Each step maps X ← aX + (bA + cA²)X with A = X Xᴴ, which acts on every singular value alone:
σ ← p(σ) = aσ + bσ³ + cσ⁵, so U and V are kept and Σ is driven towards I. Rows ≤ cols is
arranged by a (conjugate) transpose so A is the smaller Gram matrix.

Complex matrices never pass through a complex low-precision cast (which would drop the imaginary
part): they are split into real and imaginary parts and every complex product is done with three
real products (Gauss / "3M"), using that A = X Xᴴ and A² are Hermitian. Real and imaginary parts
may then run in bf16 on a GPU like any real matrix.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

Coefficients = Sequence[tuple[float, float, float]]

# Keller Jordan's quintic: maximal slope at zero; after 5 steps singular values land in about
# [0.7, 1.2] rather than at 1 (docs/optim.md gives the measured band).
QUINTIC: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)

# Polar Express (Amsel, Persson, Musco, Gower 2025, arXiv 2505.16932), degree 5, designed for
# normalized singular values in [1e-3, 1]: one minimax-optimal polynomial per step. The paper
# divides each set by a safety factor 1.01 (a/1.01, b/1.01³, c/1.01⁵), all but the last, and
# normalizes by 1.01·‖G‖_F.
_POLAR_EXPRESS_RAW: tuple[tuple[float, float, float], ...] = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)
POLAR_EXPRESS_SAFETY = 1.01
POLAR_EXPRESS: tuple[tuple[float, float, float], ...] = tuple(
    (a / POLAR_EXPRESS_SAFETY, b / POLAR_EXPRESS_SAFETY**3, c / POLAR_EXPRESS_SAFETY**5)
    for a, b, c in _POLAR_EXPRESS_RAW[:-1]
) + (_POLAR_EXPRESS_RAW[-1],)

COEFFICIENT_SETS = ("quintic", "polar_express")
NORM_INFLATION = {"quintic": 1.0, "polar_express": POLAR_EXPRESS_SAFETY}


def coefficient_schedule(coefficients: str | Coefficients, steps: int) -> list[tuple[float, float, float]]:
    """The (a, b, c) of each of `steps` iterations: a named set, or an explicit list (last one repeats)."""
    if steps < 1:
        raise ValueError(f"steps: expected at least 1, got {steps}")
    if isinstance(coefficients, str):
        if coefficients == "quintic":
            return [QUINTIC] * steps
        if coefficients == "polar_express":
            table = list(POLAR_EXPRESS)
        else:
            raise ValueError(f"coefficients: expected one of {COEFFICIENT_SETS} or a list of (a, b, c), got {coefficients!r}")
    else:
        table = [tuple(float(v) for v in abc) for abc in coefficients]  # type: ignore[misc]
        if not table or any(len(abc) != 3 for abc in table):
            raise ValueError("coefficients: expected a non-empty list of (a, b, c) triples")
    return [table[min(i, len(table) - 1)] for i in range(steps)]  # type: ignore[misc]


def default_compute_dtype(G: Tensor) -> torch.dtype:
    """bf16 matmuls on CUDA (the fast path), float32 elsewhere; float64 inputs stay float64."""
    if G.dtype in (torch.float64, torch.complex128):
        return torch.float64
    return torch.bfloat16 if G.is_cuda else torch.float32


def _ns_real(X: Tensor, schedule: list[tuple[float, float, float]]) -> Tensor:
    """Newton–Schulz on a batch (B, m, n) of real matrices, m ≤ n, already normalized."""
    for a, b, c in schedule:
        A = torch.bmm(X, X.mT)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return X


def _ns_complex(Xr: Tensor, Xi: Tensor, schedule: list[tuple[float, float, float]]) -> tuple[Tensor, Tensor]:
    """Newton–Schulz on X = Xr + i·Xi (B, m, n), m ≤ n, normalized, with real products only.

    A = X Xᴴ:  Re A = Xr Xrᵀ + Xi Xiᵀ = [Xr Xi][Xr Xi]ᵀ (one product), Im A = R ᵀ − R with R = Xr Xiᵀ.
    A² (Hermitian, Ar symmetric, Ai antisymmetric): Re = Ar² − Ai² = [Ar Ai][Ar; −Ai], Im = S − Sᵀ, S = Ar Ai.
    B X: Gauss's three products T1 = Br Xr, T2 = Bi Xi, T3 = (Br + Bi)(Xr + Xi).
    """
    for a, b, c in schedule:
        Y = torch.cat((Xr, Xi), dim=-1)
        Ar = torch.bmm(Y, Y.mT)
        R = torch.bmm(Xr, Xi.mT)
        Ai = R.mT - R
        A2r = torch.bmm(torch.cat((Ar, Ai), dim=-1), torch.cat((Ar, -Ai), dim=-2))
        S = torch.bmm(Ar, Ai)
        A2i = S - S.mT
        Br = b * Ar + c * A2r
        Bi = b * Ai + c * A2i
        T1 = torch.bmm(Br, Xr)
        T2 = torch.bmm(Bi, Xi)
        T3 = torch.bmm(Br + Bi, Xr + Xi)
        Xr, Xi = a * Xr + (T1 - T2), a * Xi + (T3 - T1 - T2)
    return Xr, Xi


def polar(
    G: Tensor,
    steps: int = 5,
    coefficients: str | Coefficients = "quintic",
    eps: float = 1e-7,
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    """Approximate U Vᴴ of every matrix in G (..., m, n), real or complex; same shape and dtype back.

    Each matrix is scaled by its own Frobenius norm (times the set's inflation) so its singular
    values start in (0, 1]. `compute_dtype` is the real dtype of the matmuls (default: bf16 on
    CUDA, float32 elsewhere, float64 for float64 inputs).
    """
    if G.ndim < 2:
        raise ValueError(f"polar: expected a batch of matrices (..., m, n), got shape {tuple(G.shape)}")
    schedule = coefficient_schedule(coefficients, steps)
    inflation = NORM_INFLATION.get(coefficients, 1.0) if isinstance(coefficients, str) else 1.0
    dtype = compute_dtype or default_compute_dtype(G)
    m, n = G.shape[-2:]
    lead = G.shape[:-2]
    X = G.reshape(-1, m, n)
    wide = m <= n
    if not wide:
        X = X.mH
    norm = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True)
    X = X / (norm * inflation + eps)
    if X.is_complex():
        Xr, Xi = _ns_complex(X.real.to(dtype), X.imag.to(dtype), schedule)
        X = torch.complex(Xr.to(G.real.dtype), Xi.to(G.real.dtype))
    else:
        X = _ns_real(X.to(dtype), schedule).to(G.dtype)
    if not wide:
        X = X.mH
    return X.reshape(*lead, m, n)
