"""Batched spectral power Ψ_p(G) = U Σ^p Vᴴ for G = U Σ Vᴴ, p in {0, 1/4, 1/2, 1}, without an SVD.

Every matrix is first scaled to unit Frobenius norm, X = G / ‖G‖_F, and the result scaled back,
Ψ_p(G) = ‖G‖_F^p · Ψ_p(X), so Ψ_p(tG) = t^p Ψ_p(G) for t > 0 holds by construction and no step
sees the scale of G. A wide X is handled as its conjugate transpose (Ψ_p(Xᴴ) = Ψ_p(X)ᴴ), so for
X (m × n), m ≥ n, the Gram matrix A = XᴴX = V Σ² Vᴴ is always the small side (n × n):

    p = 1    Ψ = G (a copy)
    p = 0    Ψ = polar(X; steps, coefficients): the one polar factor of the package, the Newton–Schulz
             run of `opspec.optim.polar` that Muon's p = 0 also is (Muon passes its configured
             ns_steps and coefficients). Called alone, the defaults are 12 Polar Express steps, an
             accurate polar factor: it iterates on Σ itself, not on Σ², so float32 resolves
             singular values the Gram route cannot: relative error ≤ 6.4e-6 up to κ = 1e3 and
             5.0e-5 at κ = 1e4, where X·A^(−1/2) gives 2.4e-3 at κ = 1e2 and 0.1 at 1e3
             (docs/spectral_power.md), at less than half the cost of p = 1/2.
    p = 1/2  Ψ = X · A^(−1/4)                       = U Σ^(1/2) Vᴴ
    p = 1/4  Ψ = X · A^(−1/4) · A^(−1/8)            = U Σ^(1/4) Vᴴ

with A normalized and regularized, Â = A / ‖A‖_F + eps·I (‖A‖_F ≥ λ_max(A), so Â's eigenvalues
lie in [eps, 1 + eps]), and the scale put back: A^q = ‖A‖_F^q · Â^q. The roots come from a chain
of coupled Newton–Schulz runs, each giving a square root and its inverse at once:

    run 1 on Â       → Â^(1/2)
    run 2 on Â^(1/2) → Â^(1/4), Â^(−1/4)      (the inverse fourth root: a square root, then an
    run 3 on Â^(1/4) → Â^(−1/8)                inverse square root of it)

p = 1/4 is Ψ_{1/2} applied twice: H = Ψ_{1/2}(X) has Gram HᴴH = A^(1/2), whose inverse fourth root
is A^(−1/8); the chain already holds A^(1/2), so the second application costs one run and no new
Gram matrix. Each run's input has the square root of the previous one's condition number, so runs
2 and 3 converge in fewer steps (`later_steps`). The chain goes through Â^(1/2) rather than
Â^(−1/2) (same condition number) because then the directions that dominate Ψ, large σ, are the
large eigenvalues of the run's input, which converge first; with short runs 2–3 the other order
is measured less accurate.

The coupled iteration (Denman–Beavers / Newton–Schulz), on B / ‖B‖_F:

    Y₀ = B, Z₀ = I;   T = ½(3I − Z Y);   Y ← Y T,   Z ← T Z;   Y → B^(1/2), Z → B^(−1/2)

For each eigenvalue λ of B / ‖B‖_F, x = z·y starts at λ and follows x ← x(3 − x)²/4: ×9/4 per step
while small, quadratic convergence near 1, so a run needs about log(1/λ_min)/log(9/4) + 3 steps. eps bounds
λ_min from below and so sets both the step count and the accuracy floor: singular values with
σ² ≲ eps·‖A‖_F are damped. It also keeps rank-deficient input finite: rounding leaves the Gram
matrix of a low-rank matrix with slightly negative eigenvalues (float32, rank 1 and 8: down to about
−6e-8·‖A‖_F), and a negative eigenvalue grows without bound under the iteration (in float32,
eps = 1e-7 turned rank-1 and rank-8 input into NaN; 1e-6 did not). Singular values that are
exactly 0 map to 0, for every p (so for p = 0 this is the polar factor on the range of G);
rounding-level ones (a float32 product of thin factors) are damped by eps for p = 1/4, 1/2 and
partly amplified by polar for p = 0, like any polar iteration.

The defaults (float32: eps = 1e-6, 20 steps; float64: eps = 1e-14, 45 steps; p = 0: 12 steps) are
measured in tools/bench_spectral_power.py; docs/spectral_power.md has the tables and the reasons.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from opspec.optim.polar import COMPLEX_OF, UNSET, Coefficients, Unset, frobenius_norms, polar

# Defaults per compute dtype, from tools/bench_spectral_power.py (docs/spectral_power.md). eps:
# float32, the smallest of the grid that kept rank-deficient input finite (1e-7 did not, at ~17x
# float32's unit roundoff 6e-8); float64, ~90x its unit roundoff 1.1e-16, measured finite. Steps:
# the first run's count for every eigenvalue ≥ eps of Â to converge, log(1/eps)/log(9/4) + 3.
DEFAULT_EPS = {torch.float32: 1e-6, torch.float64: 1e-14}
DEFAULT_STEPS = {torch.float32: 20, torch.float64: 45}
# p = 0: Polar Express steps; 12 give ≤ 5.0e-5 up to κ = 1e4 (10: 2.6e-2 at κ = 1e4).
DEFAULT_POLAR_STEPS = 12
POLAR_COEFFICIENTS = "polar_express"
# Bytes of one (B, n, n) operand per chunk of the batch on a one-thread CPU; None: the whole batch.
# 512 KiB (16 complex64 64×64 matrices) keeps a step's operands in cache, as in polar.py; at p = 1/2
# on the (576, 64, 64) complex64 batch, 1.2–1.7x faster than the whole batch (four runs, shared CPU).
CPU_CHUNK_BYTES: int | None = 512 * 1024
POWERS = (0.0, 0.25, 0.5, 1.0)  # the p this module computes (the family's p, `muon.FAMILY`)


def later_steps(steps: int) -> int:
    """Steps of runs 2 and 3: their input's condition number is the square root of the previous one's."""
    return steps // 2 + 3


def _unit(X: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(X / ‖X‖_F, a, r) with ‖X‖_F = a·r per matrix of X (B, m, n), free of overflow and underflow.

    a = max |entry| (of the real view) first, r = ‖X / a‖_F ∈ [1, √(2mn)]: squaring the entries
    directly would overflow float32 beyond ~1e19 and underflow below ~1e-19. Zero matrices stay zero.
    """
    tiny = torch.finfo(X.real.dtype).tiny
    real_view = torch.view_as_real(X.resolve_conj()) if X.is_complex() else X
    a = real_view.abs().flatten(1).amax(dim=1).view(-1, 1, 1)
    X = X / a.clamp_min(tiny)
    r = frobenius_norms(X)
    return X / r.clamp_min(tiny), a, r


def _sqrt_pair(B: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """(B^(1/2), B^(−1/2)) of Hermitian positive definite B (b, n, n) by coupled Newton–Schulz."""
    s = frobenius_norms(B).clamp_min(torch.finfo(B.real.dtype).tiny)
    eye = torch.eye(B.shape[-1], dtype=B.dtype, device=B.device)
    Y = B / s
    T = 1.5 * eye - 0.5 * Y  # the first step, Z₀ = I: T = ½(3I − Y), Z₁ = T
    Y, Z = Y @ T, T
    for _ in range(steps - 1):
        T = torch.baddbmm(eye, Z, Y, beta=1.5, alpha=-0.5)  # ½(3I − Z Y)
        Y, Z = Y @ T, T @ Z
    root = s.sqrt()
    return Y * root, Z / root


def _gram_power(X: Tensor, p: float, steps: int, eps: float, later: int | None = None) -> Tensor:
    """Ψ_p(X), p in {0, 1/4, 1/2}, of a batch X (B, m, n), m ≥ n, through the Gram matrix A = XᴴX.

    Runs 2 and 3 take `later` steps (default `later_steps(steps)`). (`spectral_power` takes p = 0 to
    `polar` instead; the benchmark compares the two.)
    """
    later = later_steps(steps) if later is None else later
    A = X.mH @ X
    c = frobenius_norms(A).clamp_min(torch.finfo(A.real.dtype).tiny)
    A_hat = A / c + eps * torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    S1, R1 = _sqrt_pair(A_hat, steps)  # Â^(1/2), Â^(−1/2)
    if p == 0.0:
        return (X @ R1) * c.pow(-0.5)  # X A^(−1/2)
    S2, R2 = _sqrt_pair(S1, later)  # Â^(1/4), Â^(−1/4)
    if p == 0.5:
        return (X @ R2) * c.pow(-0.25)  # X A^(−1/4) = X Â^(−1/4) ‖A‖_F^(−1/4)
    _, R3 = _sqrt_pair(S2, later)  # Â^(−1/8)
    return (X @ R2 @ R3) * c.pow(-0.375)  # X A^(−3/8)


def _chunks(X: Tensor, chunk_bytes: int | None | Unset = UNSET) -> list[Tensor]:
    """The batch split so one chunk's n × n operands fit `chunk_bytes` (UNSET: CPU_CHUNK_BYTES; one-thread CPU only)."""
    chunk_bytes = CPU_CHUNK_BYTES if chunk_bytes is UNSET else chunk_bytes
    if X.is_cuda or chunk_bytes is None or torch.get_num_threads() > 1:
        return [X]
    n = X.shape[-1]
    return list(X.split(max(1, chunk_bytes // (n * n * X.element_size()))))


def _check_power(p: float) -> float:
    """p as a float if it is one of `POWERS`, else a ValueError naming it."""
    try:
        value = float(p)
    except (TypeError, ValueError):
        value = math.nan
    if value not in POWERS:
        raise ValueError(f"spectral_power: p must be one of 0, 1/4, 1/2, 1, got {p!r}")
    return value


def spectral_power(
    G: Tensor,
    p: float,
    *,
    steps: int | None = None,
    eps: float | None = None,
    compute_dtype: torch.dtype | None = None,
    coefficients: str | Coefficients | None = None,
) -> Tensor:
    """U Σ^p Vᴴ of every matrix in G (..., m, n), real or complex, p in {0, 1/4, 1/2, 1}; same shape and dtype back.

    `steps`: Newton–Schulz steps (p = 0: steps of `polar`, default 12; p = 1/4, 1/2: steps of the
    first square-root run, default 20 in float32, 45 in float64). `coefficients` (p = 0 only): the
    set of `polar`, default "polar_express"; steps=5, coefficients="quintic" is Muon's map. `eps`: the Gram
    regularizer relative to ‖GᴴG‖_F (p = 1/4, 1/2 only; default 1e-6 in float32, 1e-14 in float64;
    a smaller eps needs more steps). `compute_dtype`: float32 (default) or float64 (default for
    float64/complex128 input); lower precisions are refused, since the Gram route squares κ.
    """
    return _spectral_power(G, p, steps=steps, eps=eps, compute_dtype=compute_dtype, coefficients=coefficients)


def _spectral_power(
    G: Tensor,
    p: float,
    *,
    steps: int | None = None,
    eps: float | None = None,
    compute_dtype: torch.dtype | None = None,
    coefficients: str | Coefficients | None = None,
    later: int | None = None,
    chunk_bytes: int | None | Unset = UNSET,
) -> Tensor:
    """`spectral_power` with the Gram route's runs 2–3 steps (`_gram_power`) and CPU chunk bytes (`_chunks`) chosen."""
    p = _check_power(p)
    if G.ndim < 2:
        raise ValueError(f"spectral_power: expected a batch of matrices (..., m, n), got shape {tuple(G.shape)}")
    if steps is not None and steps < 1:
        raise ValueError(f"spectral_power: steps must be at least 1, got {steps}")
    if later is not None and later < 1:
        raise ValueError(f"spectral_power: later steps must be at least 1, got {later}")
    if eps is not None and eps < 0:
        raise ValueError(f"spectral_power: eps must be ≥ 0, got {eps}")
    if p == 1.0:
        return G.clone()
    dtype = compute_dtype or (torch.float64 if G.dtype in (torch.float64, torch.complex128) else torch.float32)
    if dtype not in COMPLEX_OF:
        raise ValueError(f"spectral_power: compute_dtype must be torch.float32 or torch.float64, got {dtype}")
    m, n = G.shape[-2:]
    X = G.reshape(-1, m, n).to(COMPLEX_OF[dtype] if G.is_complex() else dtype)
    wide = m < n
    if wide:
        X = X.mH  # Ψ_p(Xᴴ) = Ψ_p(X)ᴴ: the Gram matrix XᴴX is then the small side
    X, a, r = _unit(X)
    if p == 0.0:
        out = polar(X, steps=steps or DEFAULT_POLAR_STEPS, coefficients=coefficients or POLAR_COEFFICIENTS, compute_dtype=dtype)
    else:
        steps, eps = steps or DEFAULT_STEPS[dtype], DEFAULT_EPS[dtype] if eps is None else eps
        out = torch.cat([_gram_power(x, p, steps, eps, later) for x in _chunks(X, chunk_bytes)])
        out = out * (a.pow(p) * r.pow(p))  # Ψ_p(G) = ‖G‖_F^p Ψ_p(G / ‖G‖_F)
    if wide:
        out = out.mH
    return out.resolve_conj().reshape(G.shape).to(G.dtype)  # no lazily conjugated view to the caller
