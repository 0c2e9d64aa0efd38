"""The Muon optimizer engine: layouts, grouping, torch.optim.Muon parity, state_dict, FNO end to end."""

from __future__ import annotations

import io

import pytest
import torch
from neuralop.models import FNO

from opspec.optim import Muon, build_optimizer, from_matrices, infer_layout, polar, split_parameters, to_matrices


def _float64_polar(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G.to(torch.complex128 if G.is_complex() else torch.float64), full_matrices=False)
    return U @ Vh


def test_layouts_round_trip_and_per_mode_order():
    W = torch.randn(4, 5, 3, 2, dtype=torch.complex64)
    M = to_matrices(W, "per_mode")
    assert M.shape == (6, 4, 5)
    assert torch.equal(M[1 * 2 + 1], W[:, :, 1, 1])  # mode (1, 1) is an (in x out) matrix
    assert torch.equal(from_matrices(M, "per_mode", tuple(W.shape)), W)
    F = to_matrices(W, "flatten")
    assert F.shape == (1, 4, 30) and torch.equal(from_matrices(F, "flatten", tuple(W.shape)), W)
    C = torch.randn(16, 8, 3)
    assert to_matrices(C, "conv").shape == (1, 16, 24)


@pytest.mark.parametrize(
    "shape, dtype, layout",
    [((32, 16), torch.float32, "matrix"), ((16, 32, 1), torch.float32, "conv"), ((8, 8, 4, 3), torch.complex64, "per_mode"),
     ((32,), torch.float32, None), ((32, 1, 1), torch.float32, None), ((1, 64, 1), torch.float32, None)],
)
def test_layout_rules(shape, dtype, layout):
    assert infer_layout(torch.zeros(shape, dtype=dtype)) == layout


def test_per_mode_update_equals_each_mode_alone():
    torch.manual_seed(0)
    W = torch.randn(6, 5, 4, 3, dtype=torch.complex64)
    together = from_matrices(polar(to_matrices(W, "per_mode")), "per_mode", tuple(W.shape))
    for i in range(4):
        for j in range(3):
            torch.testing.assert_close(together[:, :, i, j], polar(W[:, :, i, j]), atol=2e-5, rtol=1e-4)


def _muon_update(opt_cls, params, grads, **kw):
    before = [p.detach().clone() for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt_cls(params, **kw).step()
    return [p.detach() - b for p, b in zip(params, before)]


@pytest.mark.parametrize("rule", ["original", "match_rms_adamw"])
def test_matches_torch_muon_on_real_2d_parameters(rule):
    torch.manual_seed(1)
    shapes = [(16, 8), (8, 8), (5, 12)]
    grads = [torch.randn(s) for s in shapes]
    ours = _muon_update(Muon, [torch.nn.Parameter(torch.randn(s)) for s in shapes], grads,
                        lr=0.01, weight_decay=0.0, momentum=0.9, adjust_lr=rule)
    theirs = _muon_update(torch.optim.Muon, [torch.nn.Parameter(torch.randn(s)) for s in shapes], grads,
                          lr=0.01, weight_decay=0.0, momentum=0.9, adjust_lr_fn=rule)
    for a, b in zip(ours, theirs):
        # torch.optim.Muon runs Newton-Schulz in bf16: agreement to bf16 precision of the update
        assert (a - b).norm() / b.norm() < 3e-2


def test_weight_decay_is_decoupled_and_lr_rules_scale():
    p = torch.nn.Parameter(torch.ones(4, 2))
    p.grad = torch.zeros(4, 2)
    Muon([p], lr=0.1, weight_decay=0.5).step()  # zero gradient: only the decay acts
    torch.testing.assert_close(p.detach(), torch.full((4, 2), 0.95))
    q = torch.nn.Parameter(torch.zeros(8, 2))
    q.grad = torch.randn(8, 2)
    Muon([q], lr=0.1, momentum=0.0, adjust_lr="original", coefficients="polar_express", ns_steps=8).step()
    expected = -0.1 * 2.0 * _float64_polar(q.grad).float()  # sqrt(max(1, 8/2)) = 2
    torch.testing.assert_close(q.detach(), expected, atol=2e-3, rtol=0)


def test_purely_imaginary_gradient_gives_purely_imaginary_update():
    torch.manual_seed(2)
    W = torch.nn.Parameter(torch.zeros(6, 6, 3, 2, dtype=torch.complex64))
    W.grad = 1j * torch.randn(6, 6, 3, 2)
    Muon([W], lr=0.1, momentum=0.0).step()
    assert W.detach().real.abs().max() < 1e-6 and W.detach().imag.abs().max() > 1e-2


def test_complex_update_matches_float64_polar_per_mode():
    torch.manual_seed(3)
    W = torch.nn.Parameter(torch.zeros(8, 8, 4, 3, dtype=torch.complex64))
    W.grad = torch.randn(8, 8, 4, 3, dtype=torch.complex64)
    Muon([W], lr=1.0, momentum=0.0, adjust_lr="none", coefficients="polar_express", ns_steps=8).step()
    ref = -from_matrices(_float64_polar(to_matrices(W.grad, "per_mode")), "per_mode", tuple(W.shape))
    torch.testing.assert_close(W.detach().to(torch.complex128), ref, atol=5e-3, rtol=0)


def test_same_shape_matrices_share_one_batched_call(monkeypatch):
    import opspec.optim.muon as muon_module

    calls = []
    real_polar = muon_module.polar

    def counting_polar(G, **kw):
        calls.append(tuple(G.shape))
        return real_polar(G, **kw)

    monkeypatch.setattr(muon_module, "polar", counting_polar)
    params = [torch.nn.Parameter(torch.randn(8, 8)) for _ in range(5)] + [torch.nn.Parameter(torch.randn(8, 8, 1))]
    params += [torch.nn.Parameter(torch.randn(8, 8, 3, 2, dtype=torch.complex64)) for _ in range(2)]
    for p in params:
        p.grad = torch.randn_like(p)
    Muon(params).step()
    assert sorted(calls) == [(6, 8, 8), (12, 8, 8)]  # six real 8x8, twelve complex per-mode 8x8


def test_refuses_vectors_in_a_spectral_group():
    with pytest.raises(ValueError, match=r"shape \(5,\) has no matrix layout"):
        Muon([torch.nn.Parameter(torch.zeros(5))])


def _fno() -> FNO:
    torch.manual_seed(0)
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)


def test_build_optimizer_routes_fno_parameters():
    model = _fno()
    matrices, others = split_parameters(model)
    assert all(p.ndim >= 2 for p in matrices) and any(p.is_complex() for p in matrices)
    assert all(infer_layout(p) is None for p in others) and others
    opt = build_optimizer(model, "muon", lr=0.01, adamw_lr=1e-3)
    assert [g["use_spectral"] for g in opt.param_groups] == [True, False]
    assert opt.param_groups[1]["lr"] == 1e-3
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_fno_trains_with_muon_and_state_dict_round_trips():
    model = _fno()
    x = torch.randn(8, 1, 16, 16)
    y = torch.sin(x) + 0.1 * x.roll(1, -1)
    opt = build_optimizer(model, "muon", lr=0.02, adamw_lr=3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(30)]
    sched.step()
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())

    clone = _fno()
    clone.load_state_dict(model.state_dict())
    opt2 = build_optimizer(clone, "muon", lr=0.02, adamw_lr=3e-3)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # as a checkpoint does; loads weights-only
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(2):
        opt.step(closure)
    torch.manual_seed(0)

    def closure2():
        opt2.zero_grad()
        loss = ((clone(x) - y) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(2):
        opt2.step(closure2)
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b)
