"""`spectral_power` Ψ_p(G) = U Σ^p Vᴴ against a float64 SVD reference.

Inputs have singular values log-spaced in [1/κ, 1] (times a random scale per matrix), κ ≤ 1e2.
Tolerances (relative Frobenius error, worst matrix) follow docs/spectral_power.md, where float32 at
κ = 1e2 measured 1.4e-6 (p = 0), 9.8e-4 (p = 1/4), 3.0e-4 (p = 1/2) on 64×64; here about 3x that,
and 1e-9 for float64 compute (measured ≤ 1e-11). Rank-deficient input is checked two ways: exact
zeros (a zero-padded block: the result is exactly zero outside it) and a float32 product of thin
factors, whose rounding leaves singular values ~1e-8·σ_max that the Gram regularizer damps
(p = 1/4, 1/2) and polar partly amplifies (p = 0).
"""

from __future__ import annotations

import importlib
import math
import re

import numpy as np
import pytest
import torch

from opspec.optim import spectral_power

SP = importlib.import_module("opspec.optim.spectral_power")  # the module (the package's name is its function)

TOL = {  # (compute precision, p) -> relative error allowed at κ ≤ 1e2
    **{(torch.float32, p): tol for p, tol in ((0.0, 1e-5), (0.25, 3e-3), (0.5, 1e-3), (1.0, 1e-12))},
    **{(torch.float64, p): tol for p, tol in ((0.0, 1e-9), (0.25, 1e-9), (0.5, 1e-9), (1.0, 1e-12))},
}  # p = 1 returns G itself; 1e-12 is the float64 SVD's own reconstruction error
DTYPES = [torch.float32, torch.complex64, torch.float64, torch.complex128]
SHAPES = [(2, 12, 12), (3, 16, 10), (3, 10, 16), (2, 3, 8, 8), (2, 64, 128)]  # square, tall, wide, 2 lead dims, bench size
POWERS = [0.0, 0.25, 0.5, 1.0]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: fastest for these small matrices, and immune to a busy second core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _real(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32


def _sample(shape, dtype, kappa=1e2, seed=0):
    """G = U diag(s) Vᴴ in `dtype`, s log-spaced in [1/κ, 1] times a random scale per matrix."""
    g = torch.Generator().manual_seed(seed)
    *lead, m, n = shape
    k = min(m, n)
    wide = torch.complex128 if dtype.is_complex else torch.float64
    U, _ = torch.linalg.qr(torch.randn(*lead, m, k, dtype=wide, generator=g))
    V, _ = torch.linalg.qr(torch.randn(*lead, n, k, dtype=wide, generator=g))
    s = torch.logspace(0, -np.log10(kappa), k, dtype=torch.float64).expand(*lead, k)
    s = s * (0.5 + 2 * torch.rand(*lead, 1, dtype=torch.float64, generator=g))
    return ((U * s.unsqueeze(-2).to(wide)) @ V.mH).to(dtype)


def _reference(G, p, rank_tol=None):
    """U Σ^p Vᴴ by a float64 SVD of G; singular values ≤ rank_tol·σ_max count as 0 (also for p = 0)."""
    G = G.to(torch.complex128 if G.is_complex() else torch.float64)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    Sp = S.pow(p)
    if rank_tol is not None:
        Sp = torch.where(S > rank_tol * S[..., :1], Sp, torch.zeros_like(Sp))
    return (U * Sp.unsqueeze(-2).to(U.dtype)) @ Vh


def _rel_error(out, ref):
    diff = (out.to(ref.dtype) - ref).flatten(-2).norm(dim=-1)
    return (diff / ref.flatten(-2).norm(dim=-1)).max().item()


@pytest.mark.parametrize("p", POWERS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_svd(dtype, shape, p):
    G = _sample(shape, dtype)
    out = spectral_power(G, p)
    assert out.shape == G.shape and out.dtype == G.dtype
    assert _rel_error(out, _reference(G, p)) <= TOL[_real(dtype), p]


@pytest.mark.parametrize("p", POWERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=str)
def test_float64_compute_of_float32_input(dtype, p):
    G = _sample((2, 16, 12), dtype)
    out = spectral_power(G, p, compute_dtype=torch.float64)
    assert out.dtype == dtype
    assert _rel_error(out, _reference(G, p)) <= 1e-6  # float64 compute, then rounded to float32


@pytest.mark.parametrize("p", POWERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.float64], ids=str)
def test_homogeneous(dtype, p):
    """Ψ_p(tG) = t^p Ψ_p(G) for t > 0, far beyond where squaring the entries would overflow or underflow."""
    G = _sample((3, 12, 8), dtype, kappa=10.0)
    base = spectral_power(G, p).to(torch.complex128 if dtype.is_complex else torch.float64)
    tol = 1e-12 if _real(dtype) == torch.float64 else 1e-5
    for t in (1e-30, 1e-3, 7.5, 1e4, 1e30):
        assert _rel_error(spectral_power(t * G, p), t**p * base) <= tol


@pytest.mark.parametrize("p", POWERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=str)
def test_zero_input_gives_zero(dtype, p):
    out = spectral_power(torch.zeros(2, 3, 7, 5, dtype=dtype), p)
    assert out.shape == (2, 3, 7, 5) and torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("shape", [(4, 32, 32), (4, 24, 40)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=str)
@pytest.mark.parametrize("rank", [1, 3])
def test_low_rank_product_is_finite_and_right_on_the_range(rank, dtype, shape, p):
    """A float32 product of thin factors (its Gram matrix has slightly negative rounding eigenvalues):
    finite, and U Σ^p Vᴴ on the range with the rounding-level singular values taken as 0 (measured
    ≤ 7e-3 for p = 0, ≤ 2.6e-3 for p = 1/4, ≤ 4.5e-4 for p = 1/2)."""
    g = torch.Generator().manual_seed(rank)
    *lead, m, n = shape
    G = torch.randn(*lead, m, rank, dtype=dtype, generator=g) @ torch.randn(*lead, rank, n, dtype=dtype, generator=g)
    out = spectral_power(G, p)
    assert torch.isfinite(torch.view_as_real(out) if out.is_complex() else out).all()
    assert _rel_error(out, _reference(G, p, rank_tol=1e-4)) <= {0.0: 3e-2, 0.25: 1e-2, 0.5: 3e-3}[p]


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=str)
def test_exact_zero_singular_values_map_to_zero(dtype, p):
    """Ψ_p([[B, 0], [0, 0]]) = [[Ψ_p(B), 0], [0, 0]]: exactly zero outside the block, Ψ_p(B) inside."""
    B = _sample((2, 10, 6), dtype)
    G = torch.zeros(2, 16, 12, dtype=dtype)
    G[:, :10, :6] = B
    out = spectral_power(G, p)
    inside = out[:, :10, :6].clone()
    out[:, :10, :6] = 0
    assert torch.equal(out, torch.zeros_like(out))
    assert _rel_error(inside, _reference(B, p)) <= TOL[torch.float32, p]


def test_no_lazy_conjugate_view_returned():
    for shape in ((2, 6, 9), (2, 9, 6)):
        for p in POWERS:
            out = spectral_power(torch.randn(*shape, dtype=torch.complex64), p)
            assert not out.is_conj()


@pytest.mark.parametrize("p", [0.3, -1, 2, 0.75, 1 / 3, float("nan"), "1/2", None])
def test_unsupported_power_raises(p):
    with pytest.raises(ValueError, match="got " + re.escape(repr(p))):
        spectral_power(torch.randn(4, 4), p)


def test_bad_arguments_raise():
    G = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="batch of matrices"):
        spectral_power(torch.randn(5), 0.5)
    with pytest.raises(ValueError, match="steps"):
        spectral_power(G, 0.5, steps=0)
    with pytest.raises(ValueError, match="eps"):
        spectral_power(G, 0.5, eps=-1e-6)
    with pytest.raises(ValueError, match="compute_dtype"):
        spectral_power(G, 0.5, compute_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="later steps"):
        SP._spectral_power(G, 0.5, later=0)


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_later_steps_argument_takes_the_rules_place(monkeypatch, p):
    """`later` sets the steps of runs 2–3 as the rule `later_steps` would, bit for bit; left out, it is the rule's."""
    G = _sample((3, 16, 10), torch.complex64)
    default = spectral_power(G, p)
    assert torch.equal(SP._spectral_power(G, p), default)
    assert torch.equal(SP._spectral_power(G, p, later=SP.later_steps(SP.DEFAULT_STEPS[torch.float32])), default)
    eight = SP._spectral_power(G, p, later=8)
    assert not torch.equal(eight, default)
    monkeypatch.setattr(SP, "later_steps", lambda steps: 8)
    assert torch.equal(spectral_power(G, p), eight)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_chunk_bytes_argument_takes_the_constants_place(monkeypatch, dtype):
    """`chunk_bytes=k` cuts the Gram route's batch as CPU_CHUNK_BYTES = k would, bit for bit and in the same calls,
    whatever the constant holds; None runs it whole, and the two agree to rounding."""
    G = _sample((37, 8, 8), dtype)
    small = 5 * 8 * 8 * G.element_size()  # 5 matrices a chunk, 37 = 7·5 + 2
    gram_power, calls = SP._gram_power, []

    def counted(X, *args):
        calls.append(len(X))
        return gram_power(X, *args)

    monkeypatch.setattr(SP, "_gram_power", counted)
    runs = {}
    for constant, argument in [(small, SP.UNSET), (None, small), (None, SP.UNSET), (small, None)]:
        monkeypatch.setattr(SP, "CPU_CHUNK_BYTES", constant)
        calls.clear()
        runs[constant, argument] = SP._spectral_power(G, 0.5, chunk_bytes=argument), list(calls)
    (chunked, chunk_calls), (given, given_calls) = runs[small, SP.UNSET], runs[None, small]
    (whole, whole_calls), (unchunked, unchunked_calls) = runs[None, SP.UNSET], runs[small, None]
    assert chunk_calls == given_calls == [5] * 7 + [2] and torch.equal(given, chunked)
    assert whole_calls == unchunked_calls == [37] and torch.equal(unchunked, whole)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)


def test_identity_is_a_copy():
    G = torch.randn(3, 6, 4, dtype=torch.complex64)
    out = spectral_power(G, 1)
    assert torch.equal(out, G) and out.data_ptr() != G.data_ptr()


def test_powers_compose():
    """Ψ_{1/2}(Ψ_{1/2}(G)) = Ψ_{1/4}(G) and Ψ_{1/2}(G)'s singular values are √σ (κ ≤ 1e2, float64)."""
    G = _sample((2, 20, 12), torch.complex128)
    twice = spectral_power(spectral_power(G, 0.5), 0.5)
    assert _rel_error(twice, spectral_power(G, 0.25).to(torch.complex128)) <= 1e-9
    s = torch.linalg.svdvals(G)
    assert torch.allclose(torch.linalg.svdvals(spectral_power(G, 0.5)), s.sqrt(), rtol=1e-9, atol=0)
    assert math.isclose(float(torch.linalg.matrix_norm(spectral_power(G, 0.0), ord=2).max()), 1.0, rel_tol=1e-9)
