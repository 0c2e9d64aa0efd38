"""tools/polar_schedules.py: its gains are 1 for an exact polar factor and follow the scalar polynomial otherwise."""

from __future__ import annotations

import pytest
import torch


def test_gains_of_known_schedules():
    from tools.polar_schedules import accuracy

    torch.manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(3, 12, 12, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(3, 12, 12, dtype=torch.float64))
    sigma = torch.logspace(0, -1, 12, dtype=torch.float64)
    M = (U * sigma) @ V.mT
    rms, lo, hi = accuracy(M.float(), "polar_express", 8, 1e-3)
    assert rms < 1e-3 and lo == pytest.approx(1, abs=2e-3) and hi == pytest.approx(1, abs=2e-3)
    x = sigma / torch.linalg.norm(sigma)  # each σ/‖M‖_F through quintic × 1: a x + b x³ + c x⁵
    a, b, c = 3.4445, -4.7750, 2.0315
    expected = a * x + b * x**3 + c * x**5
    rms, lo, hi = accuracy(M.float(), "quintic", 1, 1e-3)
    assert lo == pytest.approx(float(expected.min()), rel=1e-3) and hi == pytest.approx(float(expected.max()), rel=1e-3)
    assert rms == pytest.approx(float((expected - 1).pow(2).mean().sqrt()), rel=1e-3)
