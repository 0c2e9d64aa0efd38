"""Batched Newton–Schulz polar factor polar(G) = U Vᴴ for G = U Σ Vᴴ, real or complex.

Each matrix is normalized, X₀ = G / (‖G‖_F · inflation + eps), arranged so rows ≤ cols (by a
conjugate transpose), and iterated

    A = X Xᴴ                    (m × m, Hermitian)
    B = b·A + c·A²              (Hermitian: a polynomial in A)
    X ← a·X + B·X               = a·X + b·(XXᴴ)X + c·(XXᴴ)²X

which acts on every singular value alone, σ ← p(σ) = aσ + bσ³ + cσ⁵, so U and V are kept and Σ
is driven towards I. Three batched products per step: m²n + m³ + m²n multiply–adds per matrix.

How the products run (`complex_path` picks by compute dtype):

- real input: real batched matmuls in the compute dtype (bf16 on CUDA, float32 on CPU).
- complex input, compute dtype float32/float64 ("native"): complex64/complex128 batched matmuls,
  the same three calls as the real case. A complex product is four real ones, but BLAS's complex
  kernels run it at a higher rate than real products of the parts, in one call instead of several:
  on a 2-core AVX2 CPU, (576, 64, 64) complex64, 5 quintic steps, native took 1.8–2.7x less time
  than the previous split into real and imaginary parts with three real products per complex one
  (Gauss), and 1.7–2.1x less than the real embedding below (tools/bench_optim.py, case 5).
- complex input, compute dtype bf16/fp16 ("embed", the CUDA default): there is no low-precision
  complex matmul, and a complex tensor is never cast to a low-precision complex type (a plain
  `.bfloat16()` would drop the imaginary part). The real iteration runs on the real embedding
  E(X) = [[Re X, −Im X], [Im X, Re X]] (2m × 2n), which maps complex products to real ones exactly.
  It costs 2x the real FLOPs of a native complex product (8 real m×m×n products per complex one),
  but it is the real path itself: in bf16 its error matches the real path's (~1.5% relative
  to float64 on random 64×64), where the three-product split (more roundings, Gauss's cancellation
  T3 − T1 − T2) measured ~3.5%.

On the CPU with one intra-op thread the batch runs in chunks small enough that one step's operands
stay in cache (`CPU_CHUNK_BYTES`; ~10% faster on the FNO batch above). With several threads the
batch runs whole: each chunk's matmul is a fork–join of all threads, and on a CPU shared with
another busy process every fork–join can wait out a scheduler time slice (measured: chunking made
polar 4–17x slower there).
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

COMPLEX_PATHS = ("native", "embed")
# Bytes of one operand (a chunk of X) per Newton–Schulz call on the CPU with one intra-op thread;
# None runs the whole batch at once. 512 KiB (e.g. 16 complex64 64×64 matrices) keeps a step's
# four operands (X, A, B, new X) within L2/L3; see tools/bench_optim.py for the measurement.
CPU_CHUNK_BYTES: int | None = 512 * 1024


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


_COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def complex_path(compute_dtype: torch.dtype) -> str:
    """How complex matrices are multiplied: "native" complex matmuls where the compute dtype has a
    complex counterpart (float32, float64), else "embed" (the 2m × 2n real embedding, e.g. in bf16)."""
    return "native" if compute_dtype in _COMPLEX_OF else "embed"


def _ns_real(X: Tensor, schedule: list[tuple[float, float, float]]) -> Tensor:
    """Newton–Schulz on a batch (B, m, n) of real matrices, m ≤ n, already normalized.

    A = X Xᵀ;  B = b·A + c·A² (one baddbmm);  X ← a·X + B X (one baddbmm).
    """
    for a, b, c in schedule:
        A = torch.bmm(X, X.mT)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return X


def _ns_complex_native(X: Tensor, schedule: list[tuple[float, float, float]]) -> Tensor:
    """Newton–Schulz on a batch (B, m, n) of complex matrices, m ≤ n, normalized, complex matmuls.

    The same three products as the real case with Xᴴ for Xᵀ: A = X Xᴴ;  B = b·A + c·A²;
    X ← a·X + B X. (X.mH is a lazily conjugated view; bmm resolves it.)
    """
    for a, b, c in schedule:
        A = torch.bmm(X, X.mH)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return X


def _embed(X: Tensor, dtype: torch.dtype) -> Tensor:
    """The real (B, 2m, 2n) embedding E(X) = [[Re X, −Im X], [Im X, Re X]] of complex X (B, m, n).

    E is a real *-homomorphism: E(PQ) = E(P)E(Q), E(P + Q) = E(P) + E(Q), E(Xᴴ) = E(X)ᵀ, so the
    real iteration on E(X) is E of the complex iteration on X, step for step. (‖E(X)‖_F = √2‖X‖_F:
    X is normalized by its complex norm before embedding.)
    """
    Xr, Xi = X.real.to(dtype), X.imag.to(dtype)
    return torch.cat((torch.cat((Xr, -Xi), dim=-1), torch.cat((Xi, Xr), dim=-1)), dim=-2)


def _unembed(E: Tensor, m: int, n: int, dtype: torch.dtype) -> Tensor:
    """X from E(X), projected onto the embedding's image: Re = (E₁₁ + E₂₂)/2, Im = (E₂₁ − E₁₂)/2."""
    E = E.to(dtype)
    re = (E[:, :m, :n] + E[:, m:, n:]) / 2
    im = (E[:, m:, :n] - E[:, :m, n:]) / 2
    return torch.complex(re, im)


def _chunk_size(X: Tensor) -> int:
    """Matrices per Newton–Schulz call: the whole batch, or on a 1-thread CPU `CPU_CHUNK_BYTES` worth."""
    if X.is_cuda or CPU_CHUNK_BYTES is None or torch.get_num_threads() > 1:
        return X.shape[0]
    per_matrix = X.shape[-2] * X.shape[-1] * X.element_size()
    return max(1, CPU_CHUNK_BYTES // per_matrix)


def _newton_schulz(X: Tensor, schedule: list[tuple[float, float, float]], dtype: torch.dtype, path: str) -> Tensor:
    """Iterate on the normalized batch X (B, m, n), m ≤ n; the result in X's dtype."""
    if not X.is_complex():
        return _ns_real(X.to(dtype).contiguous(), schedule).to(X.dtype)
    if path == "native":
        return _ns_complex_native(X.to(_COMPLEX_OF[dtype]).resolve_conj().contiguous(), schedule).to(X.dtype)
    if path == "embed":
        m, n = X.shape[-2:]
        return _unembed(_ns_real(_embed(X, dtype), schedule), m, n, X.real.dtype)
    raise ValueError(f"complex path: expected one of {COMPLEX_PATHS}, got {path!r}")


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
    return _polar(G, steps, coefficients, eps, compute_dtype)


def _polar(
    G: Tensor,
    steps: int,
    coefficients: str | Coefficients,
    eps: float,
    compute_dtype: torch.dtype | None,
    path: str | None = None,
) -> Tensor:
    """`polar` with the complex path forced (None: `complex_path(compute dtype)`); tests use it."""
    if G.ndim < 2:
        raise ValueError(f"polar: expected a batch of matrices (..., m, n), got shape {tuple(G.shape)}")
    schedule = coefficient_schedule(coefficients, steps)
    inflation = NORM_INFLATION.get(coefficients, 1.0) if isinstance(coefficients, str) else 1.0
    dtype = compute_dtype or default_compute_dtype(G)
    path = path or complex_path(dtype)
    m, n = G.shape[-2:]
    lead = G.shape[:-2]
    X = G.reshape(-1, m, n)
    # ‖G‖_F per matrix; through the real view for complex input (torch's complex vector_norm is
    # ~50x slower on the CPU than the same reduction over the real view).
    real_view = torch.view_as_real(X.resolve_conj()) if X.is_complex() else X
    norm = torch.linalg.vector_norm(real_view.flatten(1), dim=1).view(-1, 1, 1)
    X = X / (norm * inflation + eps)
    wide = m <= n
    if not wide:
        X = X.mH
    chunk = _chunk_size(X)
    if chunk >= X.shape[0]:
        X = _newton_schulz(X, schedule, dtype, path)
    else:
        X = torch.cat([_newton_schulz(x, schedule, dtype, path) for x in X.split(chunk)])
    if not wide:
        X = X.mH
    return X.reshape(*lead, m, n)
