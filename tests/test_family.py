"""The base × p family inside Muon: each member's first step against an independent float64 reference."""

from __future__ import annotations

import math

import pytest
import torch
from neuralop.models import FNO

from opspec.optim import FAMILY, Muon, build_optimizer


def _svd_power(G: torch.Tensor, p: float) -> torch.Tensor:
    """U Σ^p Vᴴ by a float64 SVD, rescaled to Frobenius norm √min(m, n) (the family's convention)."""
    U, S, Vh = torch.linalg.svd(G.to(torch.complex128 if G.is_complex() else torch.float64), full_matrices=False)
    O = (U * (S**p).unsqueeze(-2).to(U.dtype)) @ Vh
    return O * math.sqrt(min(G.shape[-2:])) / torch.linalg.matrix_norm(O).unsqueeze(-1).unsqueeze(-1)


def _one_step(base: str, power: float, grad: torch.Tensor, lr: float = 0.1) -> torch.Tensor:
    """−Δθ/lr of one step from θ = 0 with momentum off (base momentum) or Adam's first step (base adam)."""
    w = torch.nn.Parameter(torch.zeros_like(grad))
    w.grad = grad.clone()
    Muon([w], lr=lr, base=base, power=power, momentum=0.0, nesterov=False, adjust_lr="none").step()
    return -w.detach() / lr


@pytest.mark.parametrize("power", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_momentum_base_applies_u_sigma_p_vh(power, dtype):
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(5, 12, 8, dtype=dtype, generator=g))
    V, _ = torch.linalg.qr(torch.randn(5, 8, 8, dtype=dtype, generator=g))
    S = torch.logspace(0, -1.5, 8, dtype=torch.float64)  # κ ≈ 30
    G = (U * S.to(dtype)) @ V.mH
    grad = G.permute(1, 2, 0) if dtype.is_complex else G[0]  # complex: per-mode (in, out, modes)
    step = _one_step("momentum", power, grad)
    got = step.permute(2, 0, 1) if dtype.is_complex else step
    torch.testing.assert_close(got, _svd_power(G if dtype.is_complex else G[0], power), atol=2e-3, rtol=0)


def test_adam_base_orthogonalizes_the_bias_corrected_adam_direction():
    g = torch.Generator().manual_seed(1)
    grad = torch.randn(6, 9, dtype=torch.float64, generator=g)
    direction = grad / (grad.abs() + 1e-8)  # Adam's first step: m̂/(√v̂ + ε) = g/(|g| + ε)
    torch.testing.assert_close(_one_step("adam", 0.0, grad), _svd_power(direction, 0.0), atol=0.35, rtol=0)  # quintic band
    torch.testing.assert_close(_one_step("adam", 1.0, grad), _svd_power(direction, 1.0), atol=1e-7, rtol=0)  # eps in the norm
    U, _, Vh = torch.linalg.svd(_one_step("adam", 0.0, grad), full_matrices=False)
    torch.testing.assert_close(U @ Vh, _svd_power(direction, 0.0), atol=1e-9, rtol=0)  # the polar factor's vectors


def test_adam_base_keeps_complex_parts_apart():
    grad = torch.complex(torch.zeros(4, 5, 3, 2, dtype=torch.float64), torch.randn(4, 5, 3, 2, dtype=torch.float64))
    for power in (0.0, 0.5):
        step = _one_step("adam", power, grad)
        assert step.real.abs().max() < 1e-9 and step.imag.abs().max() > 0.1


def test_every_family_member_trains_an_fno_by_name():
    assert FAMILY["momentum_p0"] == ("momentum", 0.0) and len(FAMILY) == 8
    torch.manual_seed(2)
    x, y = torch.randn(8, 1, 12, 12), torch.randn(8, 1, 12, 12)
    for name in FAMILY:
        model = FNO(n_modes=(4, 4), hidden_channels=8, n_layers=2, in_channels=1, out_channels=1)
        opt = build_optimizer(model, name, lr=0.01, adjust_lr="match_rms_adamw")
        losses = []
        for _ in range(8):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], name


def test_bad_family_options_are_refused():
    w = torch.nn.Parameter(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="power must be one of"):
        Muon([w], power=0.3)
    with pytest.raises(ValueError, match="base must be one of"):
        Muon([w], base="rmsprop")
    with pytest.raises(ValueError, match="expected one of"):
        build_optimizer(torch.nn.Linear(3, 3), "adam_p2")


def test_bf16_compute_dtype_runs_the_gram_powers_in_float32():
    """compute_dtype=bf16 speeds up p = 0's Newton–Schulz; p = 1/4, 1/2 still run in float32."""
    grad = torch.randn(12, 8, dtype=torch.float32, generator=torch.Generator().manual_seed(3))
    w = torch.nn.Parameter(torch.zeros_like(grad))
    w.grad = grad.clone()
    Muon([w], lr=1.0, power=0.5, momentum=0.0, nesterov=False, adjust_lr="none", compute_dtype=torch.bfloat16).step()
    torch.testing.assert_close(-w.detach().double(), _svd_power(grad, 0.5), atol=2e-3, rtol=0)
