"""Each coefficient set's singular-value band, checked against float64 SVD of the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from opspec.optim.polar import NORM_INFLATION, coefficient_schedule, polar

# (set, steps, lowest normalized input singular value) -> band stated in docs/optim.md
BANDS = [
    ("quintic", 5, 1e-2, (0.68, 1.14)),
    ("quintic", 5, 1e-3, (0.47, 1.21)),
    ("polar_express", 5, 1e-3, (0.84, 1.13)),
    ("polar_express", 8, 1e-3, (0.999, 1.001)),
]


def _scalar_band(name: str, steps: int, lo: float) -> tuple[float, float]:
    s = np.geomspace(lo, 1.0, 20001) / NORM_INFLATION[name]
    for a, b, c in coefficient_schedule(name, steps):
        s = a * s + b * s**3 + c * s**5
    return float(s.min()), float(s.max())


@pytest.mark.parametrize("name, steps, lo, band", BANDS)
def test_stated_band_matches_the_polynomial(name, steps, lo, band):
    got = _scalar_band(name, steps, lo)
    assert band[0] <= got[0] and got[1] <= band[1]


@pytest.mark.parametrize("name, steps, lo, band", BANDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("shape", [(24, 24), (40, 24), (24, 40)])
def test_singular_values_land_in_the_band(name, steps, lo, band, dtype, shape):
    torch.manual_seed(0)
    m, n = shape
    k = min(m, n)
    cdtype = torch.complex128 if dtype.is_complex else torch.float64
    U, _ = torch.linalg.qr(torch.randn(m, k, dtype=cdtype))
    V, _ = torch.linalg.qr(torch.randn(n, k, dtype=cdtype))
    s = torch.logspace(np.log10(lo), 0, k, dtype=torch.float64)
    s = s / s.norm()  # Frobenius norm 1: the normalized singular values are s themselves
    G = (U * s.to(cdtype)) @ V.mH
    X = polar(G.to(dtype), steps=steps, coefficients=name).to(cdtype)
    sx = torch.linalg.svdvals(X)
    lo_band, hi_band = _scalar_band(name, steps, float(s.min()))
    assert sx.min() >= lo_band - 2e-3 and sx.max() <= hi_band + 2e-3
    D = U.mH @ X @ V  # singular vectors kept: U^H X V is diagonal, real, positive
    off = D - torch.diag_embed(torch.diagonal(D))
    assert off.abs().max() < 2e-3
    diag = torch.diagonal(D)
    assert (diag.real > 0).all()
    if diag.is_complex():
        assert diag.imag.abs().max() < 2e-3


def test_rank_deficient_and_zero_inputs_stay_finite():
    G = torch.zeros(3, 8, 8, dtype=torch.complex64)
    G[1, :, :2] = torch.randn(8, 2, dtype=torch.complex64)  # rank 2
    G[2] = 1e-30
    X = polar(G)
    assert torch.isfinite(torch.view_as_real(X)).all()
    assert X[0].abs().max() == 0
    assert torch.linalg.matrix_rank(X[1].to(torch.complex128), atol=1e-3) == 2


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_bf16_path_keeps_singular_vectors_and_imaginary_parts(device, dtype):
    """The bf16 fast path (the default on CUDA and on bf16 CPUs) within bf16 accuracy of float64."""
    torch.manual_seed(0)
    G = torch.randn(64, 32, 48, dtype=dtype, device=device)
    X = polar(G, compute_dtype=torch.bfloat16)
    assert X.dtype == dtype
    ref = polar(G.double() if not dtype.is_complex else G.to(torch.complex128), compute_dtype=torch.float64)
    assert ((X.to(ref.dtype) - ref).norm() / ref.norm()) < 3e-2
    if dtype.is_complex:
        Y = polar(1j * G.real, compute_dtype=torch.bfloat16)
        assert Y.real.abs().max() < 1e-6 and Y.imag.abs().max() > 0.1
