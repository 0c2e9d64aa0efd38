"""Batched Newton–Schulz polar factor polar(G) = U Vᴴ for G = U Σ Vᴴ, real or complex.

Each matrix is normalized, X₀ = G / (‖G‖_F · inflation + eps), arranged so rows ≤ cols (by a
conjugate transpose), and iterated

    A = X Xᴴ                    (m × m, Hermitian)
    B = b·A + c·A²              (Hermitian: a polynomial in A)
    X ← a·X + B·X               = a·X + b·(XXᴴ)X + c·(XXᴴ)²X

which acts on every singular value alone, σ ← p(σ) = aσ + bσ³ + cσ⁵, so U and V are kept and Σ
is driven towards I. Three batched products per step: m²n + m³ + m²n multiply–adds per matrix.

How the products run (`complex_path` picks by compute dtype; `default_compute_dtype` picks bf16 on
CUDA and on CPUs with bf16 hardware, float32 elsewhere):

- real input: real batched matmuls in the compute dtype.
- complex input, compute dtype float32/float64 ("native"): complex64/complex128 batched matmuls,
  the same three calls as the real case. BLAS's complex kernels run a complex product (four real
  ones) at a higher rate than real products of the parts.
- complex input, compute dtype bf16/fp16 ("rowform"): there is no low-precision complex matmul, and
  a complex tensor is never cast to a low-precision complex type (a plain `.bfloat16()` would drop
  the imaginary part). X is carried as its row form r(X) = [Re X, Im X] (m × 2n) and each complex
  product P·Q is the real product r(P)·R(Q) with R(Q) = [[Re Q, Im Q], [−Im Q, Re Q]]: exact, four
  real m·k·n products per complex one (half of the full 2m × 2n real embedding's eight), and
  with the real path's bf16 error (1.5e-2 relative to float64 on the FNO batch, against 3.7e-2 for
  a Gauss three-product split, whose T3 − T1 − T2 cancels in bf16; tools/bench_optim.py, case 5).
  The symmetry of the Hermitian A = X Xᴴ is not used: its imaginary part as S − Sᵀ (S = Im X Re Xᵀ)
  saves a quarter of those products, but S is rounded to bf16 before the difference, which cancels
  as X Xᴴ → I: on the FNO batch it doubles the bf16 error, and on the CPU it is also slower, the
  smaller products and extra elementwise passes costing more than they save (case 5 again).

On the CPU the batch runs in chunks of `CPU_CHUNK_BYTES` of iterate, so one step's operands stay in
cache (on a 2-core AVX512-BF16 CPU, (576, 64, 64) complex64, 5 quintic steps: 1.3-1.4x faster than
one call over the whole batch; tools/bench_optim.py, case 5). With several threads each chunk's
matmul is a fork–join of all of them, so on a CPU shared with another busy process the chunks can
wait out scheduler time slices; `CPU_CHUNK_BYTES = None` (one call: `_polar`'s `chunk_bytes=None`)
runs the batch whole.
"""

from __future__ import annotations

import enum
import functools
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

COMPLEX_PATHS = ("native", "rowform")
# Bytes of iterate (a chunk of X in the compute dtype) per Newton–Schulz call on the CPU; None runs
# the whole batch at once. 512 KiB (32 complex 64×64 matrices in bf16, 16 in float32) keeps a step's
# operands within L2/L3; see tools/bench_optim.py, case 5.
CPU_CHUNK_BYTES: int | None = 512 * 1024


class Unset(enum.Enum):
    """The type of UNSET: a `chunk_bytes` left at its module's CPU_CHUNK_BYTES, read when called (None: whole batch)."""

    UNSET = "unset"


UNSET = Unset.UNSET


def frobenius_norms(X: Tensor) -> Tensor:
    """‖X‖_F of every matrix of a batch (B, m, n), real or complex, as (B, 1, 1).

    Complex input goes through its real view: torch's complex vector_norm is ~50x slower on the CPU.
    """
    real_view = torch.view_as_real(X.resolve_conj()) if X.is_complex() else X
    return torch.linalg.vector_norm(real_view.flatten(1), dim=1).view(-1, 1, 1)


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


@functools.cache
def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): there bf16 matmuls run at
    2-3x the float32 rate; without them they are emulated and far slower than float32."""
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def default_compute_dtype(G: Tensor) -> torch.dtype:
    """bf16 matmuls on CUDA and on CPUs with bf16 hardware (the fast path), else float32; float64
    inputs stay float64."""
    if G.dtype in (torch.float64, torch.complex128):
        return torch.float64
    if G.is_cuda or (G.device.type == "cpu" and cpu_has_bf16_matmul()):
        return torch.bfloat16
    return torch.float32


# A real compute dtype → its complex counterpart (the native complex path; bf16 has none).
COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def complex_path(compute_dtype: torch.dtype) -> str:
    """How complex matrices are multiplied: "native" complex matmuls where the compute dtype has a
    complex counterpart (float32, float64), else "rowform" (real products of the row form [Re X, Im X]
    with the real representation, e.g. in bf16)."""
    return "native" if compute_dtype in COMPLEX_OF else "rowform"


def _ns_products(X: Tensor, schedule: list[tuple[float, float, float]], out: Tensor | None = None) -> Tensor:
    """Newton–Schulz on a batch (B, m, n) of contiguous matrices, m ≤ n, already normalized, real or complex
    (Xᴴ is Xᵀ for real X; X.mH is a lazily conjugated view that bmm resolves):

        A = X Xᴴ;  B = b·A + c·A² (one baddbmm);  X ← a·X + B X (one baddbmm).

    Every product writes into a buffer made once per call (A, B and two iterates taking turns), the
    last one into `out` when given (a contiguous (B, m, n) of X's dtype): no allocation per step.
    """
    A, B = X.new_empty(X.shape[0], X.shape[1], X.shape[1]), X.new_empty(X.shape[0], X.shape[1], X.shape[1])
    iterates = [X.new_empty(X.shape), X.new_empty(X.shape) if len(schedule) > 1 else None]
    for i, (a, b, c) in enumerate(schedule):
        torch.bmm(X, X.mH, out=A)
        torch.baddbmm(A, A, A, beta=b, alpha=c, out=B)
        target = out if out is not None and i == len(schedule) - 1 else iterates[i % 2]
        X = torch.baddbmm(X, B, X, beta=a, out=target)
    return X


def _real_rep(Z: Tensor, n: int, out: Tensor) -> Tensor:
    """R(Q) = [[Re Q, Im Q], [−Im Q, Re Q]] (B, 2k, 2n) from the row form Z = r(Q) = [Re Q, Im Q] (B, k, 2n),
    written into `out` (filling a buffer copies less than concatenating)."""
    k = Z.shape[-2]
    out[:, :k].copy_(Z)
    torch.neg(Z[..., n:], out=out[:, k:, :n])
    out[:, k:, n:].copy_(Z[..., :n])
    return out


def _ns_complex_rowform(Z: Tensor, schedule: list[tuple[float, float, float]]) -> Tensor:
    """Newton–Schulz on complex X (m ≤ n, normalized) carried as its row form Z = [Re X, Im X] (B, m, 2n).

    For complex P (m × k) and Q (k × n), r(PQ) = r(P)·R(Q): a complex product is one real product
    of (m × 2k)(2k × 2n), four real m·k·n products, as a complex matmul costs. With R(Xᴴ) = R(X)ᵀ:

        r(A) = Z·R(X)ᵀ                   A = X Xᴴ
        r(B) = b·r(A) + c·r(A)·R(A)      B = b·A + c·A²
        Z   ← a·Z + r(B)·R(X)            X ← a·X + B·X
    """
    batch, m, n = Z.shape[0], Z.shape[-2], Z.shape[-1] // 2
    RX, RA = Z.new_empty(batch, 2 * m, 2 * n), Z.new_empty(batch, 2 * m, 2 * m)
    for a, b, c in schedule:
        _real_rep(Z, n, RX)
        rA = torch.bmm(Z, RX.mT)
        rB = torch.baddbmm(rA, rA, _real_rep(rA, m, RA), beta=b, alpha=c)
        Z = torch.baddbmm(Z, rB, RX, beta=a)
    return Z


def _chunk_size(X: Tensor, dtype: torch.dtype, chunk_bytes: int | None | Unset = UNSET) -> int:
    """Matrices per Newton–Schulz call: on the CPU `chunk_bytes` of iterate in the compute dtype, else the whole batch."""
    chunk_bytes = CPU_CHUNK_BYTES if chunk_bytes is UNSET else chunk_bytes
    if X.device.type != "cpu" or chunk_bytes is None:
        return X.shape[0]
    per_matrix = X.shape[-2] * X.shape[-1] * (2 if X.is_complex() else 1) * torch.finfo(dtype).bits // 8
    return max(1, chunk_bytes // per_matrix)


def _newton_schulz(X: Tensor, schedule: list[tuple[float, float, float]], dtype: torch.dtype, path: str,
                   out: Tensor | None = None) -> Tensor:
    """Iterate on the normalized batch X (B, m, n), m ≤ n; the result in X's dtype, written into `out`
    when given (directly by the last product where the compute dtype is X's own)."""
    if not X.is_complex() or path == "native":
        work = dtype if not X.is_complex() else COMPLEX_OF[dtype]
        direct = out is not None and work == X.dtype
        Y = _ns_products(X.to(work).resolve_conj().contiguous(), schedule, out if direct else None).to(X.dtype)
    elif path == "rowform":
        n = X.shape[-1]
        Z = _ns_complex_rowform(torch.cat((X.real, X.imag), dim=-1).to(dtype), schedule).to(X.real.dtype)
        Y, direct = torch.complex(Z[..., :n], Z[..., n:]), False
    else:
        raise ValueError(f"complex path: expected one of {COMPLEX_PATHS}, got {path!r}")
    if out is None or direct:
        return Y
    return out.copy_(Y)


def polar(
    G: Tensor,
    steps: int = 5,
    coefficients: str | Coefficients = "quintic",
    eps: float = 1e-7,
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    """Approximate U Vᴴ of every matrix in G (..., m, n), real or complex; same shape and dtype back.

    Each matrix is scaled by its own Frobenius norm (times the set's inflation) so its singular
    values start in (0, 1]. `compute_dtype` is the real dtype of the matmuls (default,
    `default_compute_dtype`: float64 for float64/complex128 input, else bf16 on CUDA and on CPUs with
    bf16 matmul hardware, float32 elsewhere).
    """
    return _polar(G, steps, coefficients, eps, compute_dtype)


def _polar(
    G: Tensor,
    steps: int,
    coefficients: str | Coefficients,
    eps: float,
    compute_dtype: torch.dtype | None,
    path: str | None = None,
    chunk_bytes: int | None | Unset = UNSET,
) -> Tensor:
    """`polar` with the complex path (None: `complex_path(compute dtype)`) and CPU chunk bytes (`Unset`) chosen."""
    if G.ndim < 2:
        raise ValueError(f"polar: expected a batch of matrices (..., m, n), got shape {tuple(G.shape)}")
    schedule = coefficient_schedule(coefficients, steps)
    inflation = NORM_INFLATION.get(coefficients, 1.0) if isinstance(coefficients, str) else 1.0
    dtype = compute_dtype or default_compute_dtype(G)
    path = path or complex_path(dtype)
    m, n = G.shape[-2:]
    lead = G.shape[:-2]
    X = G.reshape(-1, m, n)
    X = X / (frobenius_norms(X) * inflation + eps)
    wide = m <= n
    if not wide:
        X = X.mH
    chunk = _chunk_size(X, dtype, chunk_bytes)
    if chunk >= X.shape[0]:
        X = _newton_schulz(X, schedule, dtype, path)
    else:  # each chunk's result straight into its rows of one output (no concatenation)
        result = torch.empty(X.shape, dtype=X.dtype, device=X.device)
        for x, y in zip(X.split(chunk), result.split(chunk)):
            _newton_schulz(x, schedule, dtype, path, out=y)
        X = result
    if not wide:
        X = X.mH
    return X.reshape(*lead, m, n)
