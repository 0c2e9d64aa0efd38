"""Every Newton–Schulz path `polar` can take, against a float64 SVD reference.

Paths: real; complex "native" (complex matmuls, the float32/float64 default); complex "rowform"
(the row form [Re X, Im X] times the real representation [[Re, Im], [−Im, Re]], the bf16 path,
here forced in float32/float64 and also run in bf16); the CPU's chunked batch. For G = U Σ Vᴴ the result
must keep the singular vectors (Uᴴ·X·V diagonal, real, positive) and map each normalized singular
value σ/‖G‖_F through the scalar iteration σ ← aσ + bσ³ + cσ⁵.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch

import opspec.optim.polar  # noqa: F401  (the module; `opspec.optim.polar` the name is the function)

P = sys.modules["opspec.optim.polar"]

PATHS = [  # (input dtype, forced complex path or None, compute dtype)
    (torch.float32, None, None),
    (torch.float64, None, None),
    (torch.complex64, "native", None),
    (torch.complex64, "rowform", None),
    (torch.complex128, "native", None),
    (torch.complex128, "rowform", None),
]
SHAPES = [(2, 12, 12), (3, 16, 10), (3, 10, 16), (2, 3, 8, 8)]  # square, tall, wide, 2 leading dims
COEFFS = [("quintic", 5), ("polar_express", 5)]


def _reference_input(shape, dtype, lo=1e-2, seed=0):
    """G = U diag(s) Vᴴ (float64 / complex128): s log-spaced in [lo, 1] times a random scale per matrix."""
    g = torch.Generator().manual_seed(seed)
    *lead, m, n = shape
    k = min(m, n)
    ref = torch.complex128 if dtype.is_complex else torch.float64
    U, _ = torch.linalg.qr(torch.randn(*lead, m, k, dtype=ref, generator=g))
    V, _ = torch.linalg.qr(torch.randn(*lead, n, k, dtype=ref, generator=g))
    s = torch.logspace(np.log10(lo), 0, k, dtype=torch.float64).expand(*lead, k)
    s = s * (0.5 + torch.rand(*lead, 1, dtype=torch.float64, generator=g))  # a scale per matrix
    G = (U * s.unsqueeze(-2).to(ref)) @ V.mH
    return G, U, V, s


def _scalar_iteration(s, name, steps, eps=1e-7):
    s = s / (s.norm(dim=-1, keepdim=True) * P.NORM_INFLATION[name] + eps)
    for a, b, c in P.coefficient_schedule(name, steps):
        s = a * s + b * s**3 + c * s**5
    return s


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices run fastest on one intra-op thread, which also keeps the timing of these tests
    immune to a busy second core (every parallel op can wait out a time slice there)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextmanager
def _one_thread_chunks(chunk_bytes):
    """Run with one intra-op thread and `CPU_CHUNK_BYTES` = chunk_bytes (the chunked CPU path)."""
    threads, old = torch.get_num_threads(), P.CPU_CHUNK_BYTES
    torch.set_num_threads(1)
    P.CPU_CHUNK_BYTES = chunk_bytes
    try:
        yield
    finally:
        P.CPU_CHUNK_BYTES = old
        torch.set_num_threads(threads)


def _check_against_svd(X, G, U, V, s, name, steps, tol):
    ref = torch.complex128 if G.is_complex() else torch.float64
    X = X.to(ref)
    D = U.mH @ X @ V  # keeps singular vectors: diagonal, real, positive
    diag = torch.diagonal(D, dim1=-2, dim2=-1)
    off = D - torch.diag_embed(diag)
    assert off.abs().max() < tol
    if diag.is_complex():
        assert diag.imag.abs().max() < tol
        diag = diag.real
    assert (diag > 0).all()
    torch.testing.assert_close(diag, _scalar_iteration(s, name, steps), atol=tol, rtol=0)


@pytest.mark.parametrize("dtype, path, compute", PATHS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name, steps", COEFFS)
def test_path_keeps_singular_vectors_and_maps_singular_values(dtype, path, compute, shape, name, steps):
    G, U, V, s = _reference_input(shape, dtype)
    X = P._polar(G.to(dtype), steps, name, 1e-7, compute, path)
    assert X.shape == G.shape and X.dtype == dtype
    tol = 1e-9 if dtype in (torch.float64, torch.complex128) else 2e-4
    _check_against_svd(X, G, U, V, s, name, steps, tol)


@pytest.mark.parametrize("dtype, path", [(torch.float32, None), (torch.complex64, "native"), (torch.complex64, "rowform")])
@pytest.mark.parametrize("shape", [(37, 8, 8), (37, 12, 6)])
def test_cpu_chunks_equal_the_whole_batch(dtype, path, shape):
    G, U, V, s = _reference_input(shape, dtype, seed=1)
    G = G.to(dtype)
    whole = P._polar(G, 5, "quintic", 1e-7, None, path)
    with _one_thread_chunks(5 * 8 * 8 * G.element_size()):  # 5 matrices a chunk, 37 = 7·5 + 2
        assert P._chunk_size(G, torch.float32) < G.shape[0]  # the chunked path runs
        chunked = P._polar(G, 5, "quintic", 1e-7, None, path)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
    _check_against_svd(chunked, G, U, V, s, "quintic", 5, 2e-4)


@pytest.mark.parametrize("dtype, path", [(torch.float32, None), (torch.complex64, "native"), (torch.complex64, "rowform")])
def test_chunk_bytes_argument_takes_the_constants_place(monkeypatch, dtype, path):
    """`_polar(..., chunk_bytes=k)` runs as CPU_CHUNK_BYTES = k would, bit for bit and in the same calls, whatever the
    constant holds; a small k cuts the batch, None runs it whole, and the two agree to rounding."""
    G = _reference_input((37, 8, 8), dtype, seed=3)[0].to(dtype)
    small = 5 * 8 * 8 * G.element_size()  # 5 matrices a chunk in float32 compute, 37 = 7·5 + 2
    newton_schulz, calls = P._newton_schulz, []

    def counted(X, *args, **kwargs):
        calls.append(len(X))
        return newton_schulz(X, *args, **kwargs)

    monkeypatch.setattr(P, "_newton_schulz", counted)
    runs = {}
    for constant, argument in [(small, P.UNSET), (None, small), (None, P.UNSET), (small, None)]:
        monkeypatch.setattr(P, "CPU_CHUNK_BYTES", constant)
        calls.clear()
        runs[constant, argument] = P._polar(G, 5, "quintic", 1e-7, torch.float32, path, chunk_bytes=argument), list(calls)
    (chunked, chunk_calls), (given, given_calls) = runs[small, P.UNSET], runs[None, small]
    (whole, whole_calls), (unchunked, unchunked_calls) = runs[None, P.UNSET], runs[small, None]
    assert chunk_calls == given_calls == [5] * 7 + [2] and torch.equal(given, chunked)
    assert whole_calls == unchunked_calls == [37] and torch.equal(unchunked, whole)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("path", ["native", "rowform"])
@pytest.mark.parametrize("shape", [(4, 8, 8), (4, 12, 6)])
def test_purely_imaginary_in_purely_imaginary_out(path, shape):
    R = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    X = P._polar(torch.complex(torch.zeros_like(R), R), 5, "quintic", 1e-7, None, path)
    assert X.real.abs().max() < 1e-6
    torch.testing.assert_close(X.imag, P.polar(R), atol=1e-5, rtol=0)  # polar(iR) = i·polar(R)


@pytest.mark.parametrize("dtype, path", [(torch.float32, None), (torch.complex64, "native"), (torch.complex64, "rowform")])
def test_zero_matrices_give_zeros_without_nan(dtype, path):
    G = torch.zeros(3, 6, 9, dtype=dtype)
    G[1] = torch.randn(6, 9, dtype=dtype)
    for chunk in (None, 6 * 9 * G.element_size()):
        with _one_thread_chunks(chunk):
            X = P._polar(G, 5, "quintic", 1e-7, None, path)
        assert torch.isfinite(torch.view_as_real(X) if X.is_complex() else X).all()
        assert X[0].abs().max() == 0 and X[2].abs().max() == 0 and X[1].abs().max() > 0.1


def test_default_path_choice():
    assert P.complex_path(torch.float32) == "native" and P.complex_path(torch.float64) == "native"
    assert P.complex_path(torch.bfloat16) == "rowform" and P.complex_path(torch.float16) == "rowform"


def test_default_compute_dtype_follows_the_hardware(monkeypatch):
    G = torch.zeros(2, 4, 4, dtype=torch.complex64)
    monkeypatch.setattr(P, "cpu_has_bf16_matmul", lambda: True)
    assert P.default_compute_dtype(G) == torch.bfloat16
    assert P.default_compute_dtype(G.to(torch.complex128)) == torch.float64
    monkeypatch.setattr(P, "cpu_has_bf16_matmul", lambda: False)
    assert P.default_compute_dtype(G) == torch.float32 and P.default_compute_dtype(G.real) == torch.float32
    with pytest.raises(ValueError, match="complex path"):
        P._polar(torch.randn(2, 3, 3, dtype=torch.complex64), 5, "quintic", 1e-7, None, "bogus")


@pytest.mark.parametrize("shape", [(3, 8, 12), (3, 12, 8)])
def test_bf16_compute_path_runs_on_cpu_too(shape):
    """The bf16 default of CUDA and bf16 CPUs (complex through the row form) on small matrices: the
    complex error is no worse than the real path's error on a real input of the same size."""
    errors = {}
    for dtype in (torch.float32, torch.complex64):
        G, U, V, s = _reference_input(shape, dtype, seed=3)
        X = P.polar(G.to(dtype), compute_dtype=torch.bfloat16)
        assert X.dtype == dtype and X.shape == G.shape
        ref = P.polar(G, compute_dtype=torch.float64)
        errors[dtype] = ((X.to(ref.dtype) - ref).norm() / ref.norm()).item()
    assert errors[torch.float32] < 3e-2 and errors[torch.complex64] < 1.5 * errors[torch.float32] + 5e-3
    Y = P.polar(torch.complex(torch.zeros(4, 6, 6), torch.randn(4, 6, 6)), compute_dtype=torch.bfloat16)
    assert Y.real.abs().max() < 1e-6 and Y.imag.abs().max() > 0.1  # the imaginary part survives bf16
