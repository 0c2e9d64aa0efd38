"""SpecMuon against its equations (docs/specmuon.md), a float64 SVD, and its energy guarantee."""

from __future__ import annotations

import io
import math

import pytest
import torch
from neuralop.models import FNO

from opspec.optim import SpecMuon, build_optimizer
from opspec.optim.polar import coefficient_schedule
from opspec.optim.specmuon import top_singular_triplets


def _quadratic_closure(opt, params, targets):
    def closure():
        opt.zero_grad()
        loss = sum(((p - t).abs() ** 2).sum() for p, t in zip(params, targets)) / 2
        loss.backward()
        return loss
    return closure


def test_step_without_closure_is_a_clear_error():
    w = torch.nn.Parameter(torch.randn(4, 4))
    w.grad = torch.randn(4, 4)
    with pytest.raises(ValueError, match="needs the loss"):
        SpecMuon([w]).step()


def test_first_step_follows_the_equations_against_float64_svd():
    """One step in float64 with momentum 0: guided modes move by γ·r̃_j/E along u_j v_jᴴ, the rest by
    the Newton–Schulz scalar map of their normalized singular values, and r follows the SAV shrink
    and relaxation formulas."""
    torch.manual_seed(0)
    k, lr, C = 2, 0.3, 0.5
    w = torch.nn.Parameter(torch.randn(6, 5, 3, dtype=torch.complex128))  # per-mode: three 6 × 5 matrices
    w0 = w.detach().clone()
    target = torch.randn_like(w)
    opt = SpecMuon([w], lr=lr, momentum=0.0, guided_modes=k, energy_shift=C, topk="svd", adjust_lr="none", loss_ema=0.0)
    loss = opt.step(_quadratic_closure(opt, [w], [target]))
    E = math.sqrt(loss.item() + C)
    G = (w0 - target).permute(2, 0, 1)  # the per-mode layout of (in, out, m): (m, in, out)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    sigma = S[:, :k]
    r_tilde = E / (1 + lr * sigma / (2 * E**2))
    T = 0.8 * r_tilde**2 + 0.2 * E**2
    chi = torch.where(E > T.sqrt(), (E - T.sqrt()) / (E - r_tilde), 0.0)  # the smallest admissible χ
    r_expected = chi * r_tilde + (1 - chi) * E
    torch.testing.assert_close(opt.state[w]["r"].double(), r_expected, rtol=1e-9, atol=0)  # ε only in the normalization
    s = S / S.norm(dim=-1, keepdim=True)
    for a, b, c in coefficient_schedule("quintic", 5):
        s = a * s + b * s**3 + c * s**5
    weights = torch.cat((r_tilde / E, s[:, k:]), dim=-1)
    O = (U * weights.unsqueeze(-2).to(U.dtype)) @ Vh
    torch.testing.assert_close((w0 - w.detach()).permute(2, 0, 1) / lr, O, atol=1e-7, rtol=0)  # eps = 1e-8 in two norms


def test_modified_energy_never_increases_on_noisy_minibatches():
    torch.manual_seed(1)
    model = FNO(n_modes=(4, 4), hidden_channels=8, n_layers=2, in_channels=1, out_channels=1)
    opt = build_optimizer(model, "specmuon", lr=0.05, loss_ema=0.0)  # the raw batch loss: the noisiest E
    x, y = torch.randn(32, 1, 12, 12), torch.randn(32, 1, 12, 12)
    energies, r_prev = [], None
    for step in range(25):
        idx = torch.randint(0, 32, (4,))

        def closure():
            opt.zero_grad()
            loss = ((model(x[idx]) - y[idx]) ** 2).mean()
            loss.backward()
            return loss

        opt.step(closure)
        energies.append(opt.modified_energy())
        r = torch.cat([st["r"].flatten() for st in opt.state.values() if "r" in st])
        if r_prev is not None:
            assert (r <= r_prev * (1 + 1e-6)).all(), step  # every guided mode's r_j, not only the sum
        r_prev = r
    assert all(b <= a * (1 + 1e-6) for a, b in zip(energies, energies[1:]))
    assert energies[-1] < energies[0]


def test_subspace_iteration_finds_the_top_triplets():
    g = torch.Generator().manual_seed(2)
    U, _ = torch.linalg.qr(torch.randn(8, 16, 16, dtype=torch.complex128, generator=g))
    V, _ = torch.linalg.qr(torch.randn(8, 12, 12, dtype=torch.complex128, generator=g))
    s = torch.logspace(0, -3, 12, dtype=torch.float64)
    G = (U[..., :12] * s.to(U.dtype)) @ V.mH
    Uk, sk, Vk, basis = top_singular_triplets(G, 3)
    for _ in range(6):  # warm-started steps on the same matrix keep converging, by (s₄/s₃)² ≈ 0.28 each
        Uk, sk, Vk, basis = top_singular_triplets(G, 3, basis)
    torch.testing.assert_close(sk, s[:3].expand(8, 3), rtol=1e-8, atol=0)
    torch.testing.assert_close(Uk @ torch.diag_embed(sk).to(Uk.dtype) @ Vk.mH,
                               (U[..., :3] * s[:3].to(U.dtype)) @ V[..., :3].mH, atol=1e-5, rtol=0)


def test_subspace_and_svd_give_the_same_step_when_the_spectrum_is_separated():
    torch.manual_seed(3)
    base = torch.randn(10, 10, dtype=torch.float64)
    U, _, Vh = torch.linalg.svd(base)
    target = (U * torch.logspace(1, -2, 10, dtype=torch.float64)) @ Vh
    results = {}
    for method in ("svd", "subspace"):
        w = torch.nn.Parameter(torch.zeros(10, 10, dtype=torch.float64))
        opt = SpecMuon([w], lr=0.01, guided_modes=3, topk=method, subspace_iters=10)  # error ~ (s₄/s₃)^(2·iters)
        for _ in range(3):
            opt.step(_quadratic_closure(opt, [w], [target]))
        results[method] = w.detach()
    torch.testing.assert_close(results["subspace"], results["svd"], atol=1e-9, rtol=0)


def test_purely_imaginary_gradient_gives_purely_imaginary_update():
    w = torch.nn.Parameter(torch.zeros(4, 6, 3, 2, dtype=torch.complex64))
    target = torch.complex(torch.zeros(4, 6, 3, 2), torch.randn(4, 6, 3, 2))
    opt = SpecMuon([w], lr=0.1)
    opt.step(_quadratic_closure(opt, [w], [target]))
    assert w.real.abs().max() < 1e-6 and w.imag.abs().max() > 1e-3


def test_state_dict_round_trip_resumes_exactly():
    def run(steps, resume_from=None):
        torch.manual_seed(4)
        model = FNO(n_modes=(4, 4), hidden_channels=8, n_layers=2, in_channels=1, out_channels=1)
        opt = build_optimizer(model, "specmuon", lr=0.02)
        x, y = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
        if resume_from is not None:
            model.load_state_dict(resume_from[0], strict=False)
            opt.load_state_dict(resume_from[1])
        for _ in range(steps):
            def closure():
                opt.zero_grad()
                loss = ((model(x) - y) ** 2).mean()
                loss.backward()
                return loss
            opt.step(closure)
        buf = io.BytesIO()
        weights = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
        torch.save((weights, opt.state_dict()), buf)
        buf.seek(0)
        return torch.load(buf, weights_only=True)

    straight = run(6)
    resumed = run(3, resume_from=run(3))
    for key in straight[0]:
        assert torch.equal(straight[0][key], resumed[0][key]), key
    assert "loss_energy" in straight[1]["state"]
