"""The optimizer's pieces alone (directions, apply, SpecMuon's step control) against hand computations,
the one LR orientation, the options table against the config schema, and the p = 0 map."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from opspec.training.config import OptimizerConfig, load_config, to_container
from opspec.optim import (Muon, SpecMuon, SpectralOptimizer, build_optimizer, check_optimizer_options, options_from_config,
                          polar, resolve_layout)
from opspec.optim.apply import decoupled_update, heavy_ball, lr_scale
from opspec.optim.directions import adam_direction, gradient_direction, momentum_direction
from opspec.optim import FAMILY
from opspec.optim.options import ADAMW_GROUP, FRACTION, POSITIVE, SPECTRAL, Option
from opspec.optim.polar import frobenius_norms
from opspec.optim.registry import OPTIMIZERS, REGISTRY, Entry, optimizer_options
from opspec.optim.rsav import relax, sav_shrink
from opspec.optim.sharding import Work
from opspec.optim.spectral_power import spectral_power


def test_momentum_direction_two_steps_by_hand():
    g1, g2 = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5])
    state: dict = {}
    momentum_direction([g1], [state], 0.9, nesterov=False)
    (d,) = momentum_direction([g2], [state], 0.9, nesterov=False)
    b2 = 0.9 * (0.1 * g1) + 0.1 * g2
    torch.testing.assert_close(d, b2)
    state = {}
    momentum_direction([g1], [state], 0.9, nesterov=True)
    (d,) = momentum_direction([g2], [state], 0.9, nesterov=True)
    torch.testing.assert_close(d, 0.1 * g2 + 0.9 * b2)  # the look-ahead, not the buffer
    assert gradient_direction([g1], [{}])[0] is g1


def test_adam_direction_bias_corrected_and_complex_parts_apart():
    g1 = torch.tensor([1.0 + 2.0j, -3.0 + 0.0j], dtype=torch.complex128)
    g2 = torch.tensor([0.5 - 1.0j, 1.0 + 4.0j], dtype=torch.complex128)
    b1, b2, eps = 0.5, 0.75, 1e-3
    state: dict = {}
    adam_direction([g1], [state], (b1, b2), eps)
    (d,) = adam_direction([g2], [state], (b1, b2), eps)
    for part in (torch.real, torch.imag):  # each part its own Adam
        m = b1 * (1 - b1) * part(g1) + (1 - b1) * part(g2)
        v = b2 * (1 - b2) * part(g1) ** 2 + (1 - b2) * part(g2) ** 2
        torch.testing.assert_close(part(d), (m / (1 - b1**2)) / ((v / (1 - b2**2)).sqrt() + eps))
    assert state["step"] == 2


def test_apply_pieces():
    assert lr_scale(16, 4, "original") == 2.0 and lr_scale(4, 16, "original") == 1.0
    assert lr_scale(4, 16, "match_rms_adamw") == pytest.approx(0.8) and lr_scale(3, 5, "none") == 1.0
    p, u = torch.ones(3), torch.tensor([1.0, 2.0, 3.0])
    decoupled_update(p, u, lr=0.1, weight_decay=0.5, scale=2.0)
    torch.testing.assert_close(p, 0.95 - 0.2 * u)
    state: dict = {}
    heavy_ball(state, u, 0.9)
    torch.testing.assert_close(heavy_ball(state, u, 0.9), 1.9 * u)


def _float64_polar(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G.to(torch.complex128 if G.is_complex() else torch.float64), full_matrices=False)
    return U @ Vh


def _guided_reference(G: torch.Tensor, gamma: float, energy: float) -> torch.Tensor:
    """SpecMuon's first step per matrix with k = 1 (r = E): U diag(r̃/E, 1, …, 1) Vᴴ, float64 SVD."""
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    weights = torch.ones_like(S)
    weights[..., 0] = 1 / (1 + gamma * S[..., 0] / (2 * energy**2))  # r̃ / E
    return (U * weights.unsqueeze(-2).to(U.dtype)) @ Vh


@pytest.mark.parametrize("optimizer", ["muon", "specmuon"])
def test_lr_rule_reads_out_over_in_for_linear_and_spectral_weights(optimizer):
    """A linear (out=16, in=4) weight and a spectral (in=4, out=16, modes) weight both get √(16/4) = 2
    under adjust_lr="original" (the per-mode matrices are (in × out): rows are the input side); in
    SpecMuon the same γ = lr·2 also drives the SAV shrink."""
    torch.manual_seed(0)
    linear = torch.nn.Parameter(torch.zeros(16, 4, dtype=torch.float64))
    spectral = torch.nn.Parameter(torch.zeros(4, 16, 3, 2, dtype=torch.complex128))
    linear.grad, spectral.grad = torch.randn_like(linear), torch.randn_like(spectral)
    G_linear, G_modes = linear.grad.clone(), spectral.grad.permute(2, 3, 0, 1).clone()
    lr = 0.1
    common = dict(lr=lr, momentum=0.0, adjust_lr="original", coefficients="polar_express", ns_steps=12)
    if optimizer == "muon":
        Muon([linear, spectral], nesterov=False, **common).step()
        expected_linear, expected_modes = _float64_polar(G_linear), _float64_polar(G_modes)
    else:
        opt = SpecMuon([linear, spectral], guided_modes=1, topk="svd", energy_shift=1.0, **common)
        opt.step(lambda: torch.tensor(1.0, dtype=torch.float64))
        energy = math.sqrt(1.0 + 1.0)
        expected_linear = _guided_reference(G_linear, lr * 2.0, energy)
        expected_modes = _guided_reference(G_modes, lr * 2.0, energy)
    torch.testing.assert_close(-linear.detach() / lr, 2.0 * expected_linear, atol=1e-6, rtol=0)
    torch.testing.assert_close(-spectral.detach().permute(2, 3, 0, 1) / lr, 2.0 * expected_modes, atol=1e-6, rtol=0)


def test_relax_smallest_admissible_chi_in_both_cases_by_hand():
    r, r_tilde, xi = torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.8], dtype=torch.float64), 0.2
    root_t = math.sqrt(0.8 * 0.64 + 0.2 * 1.0)  # √T = √0.712 = 0.8438…
    # E ≥ r̃ and above √T: the relaxation stops exactly at the bound, r⁺ = √T
    r_new, chi = relax(r, r_tilde, 1.5, xi)
    assert chi.item() == pytest.approx((1.5 - root_t) / (1.5 - 0.8), rel=1e-12)
    assert r_new.item() == pytest.approx(root_t, rel=1e-12)
    assert (chi * 0.8 + (1 - chi) * 1.5).item() == pytest.approx(root_t, rel=1e-12)
    # r̃ ≤ E ≤ √T: χ = 0, r⁺ = E
    r_new, chi = relax(r, r_tilde, 0.82, xi)
    assert chi.item() == 0.0 and r_new.item() == 0.82
    # E < r̃: χ = 0 is admissible (E² < r̃² ≤ T), so r⁺ = E, not r̃ (the old clamp to χ = 1)
    r_new, chi = relax(r, r_tilde, 0.5, xi)
    assert chi.item() == 0.0 and r_new.item() == 0.5
    # ξ = 0: the target is r̃², so r⁺ ≤ r̃; ξ = 1: the target is r², so r⁺ may come back up to r
    assert relax(r, r_tilde, 1.5, 0.0)[0].item() == pytest.approx(0.8, rel=1e-12)
    assert relax(r, r_tilde, 1.5, 1.0)[0].item() == pytest.approx(1.0, rel=1e-12)
    assert sav_shrink(r, torch.tensor([2.0], dtype=torch.float64), 0.5, 1.0).item() == pytest.approx(1 / 1.5)


def test_r_never_increases_over_1000_float64_steps_with_tiny_gradients():
    """Large steps first (r falls below E = √(ℓ + C) ≈ 1 on some mode), then 1000 steps with tiny
    gradients, where r̃ ≈ r and E > r: an ε in χ's denominator would raise r by about ε every step."""
    torch.manual_seed(1)
    w = torch.nn.Parameter(torch.zeros(6, 5, dtype=torch.float64))
    target = 3 * torch.randn(6, 5, dtype=torch.float64)
    opt = SpecMuon([w], lr=2.0, guided_modes=3, topk="svd", loss_ema=0.0)

    def closure():
        opt.zero_grad()
        loss = ((w - target) ** 2).sum() / 2
        loss.backward()
        return loss

    for _ in range(30):
        opt.step(closure)
    target = w.detach() + 1e-7 * torch.randn(6, 5, dtype=torch.float64)
    opt.param_groups[0]["lr"] = 1e-3
    previous = opt.state[w]["r"].clone()
    assert previous.min() < 0.95  # a mode with E > r, where the drift would show
    for step in range(1000):
        opt.step(closure)
        r = opt.state[w]["r"].clone()
        assert (r <= previous).all(), (step, (r - previous).max().item())
        previous = r


def test_config_schema_is_generated_from_the_options():
    fields = {f.name: f for f in dataclasses.fields(OptimizerConfig)}
    for name in OPTIMIZERS:
        for option in optimizer_options(name):
            assert option.name in fields, (name, option.name)
    defaults = OptimizerConfig()
    assert defaults.ns_steps == 5 and defaults.subspace_iters == 1 and defaults.momentum is None


def test_every_option_is_settable_from_a_config():
    cfg = load_config(overrides=["optimizer.name=specmuon", "optimizer.subspace_iters=3", "optimizer.spectral_eps=1e-6",
                                 "optimizer.min_side=3", "optimizer.momentum=0.5", "optimizer.compute_dtype=float64"])
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    opt = build_optimizer(model, "specmuon", **options_from_config("specmuon", to_container(cfg.optimizer)))
    group = opt.param_groups[0]
    assert (group["subspace_iters"], group["eps"], group["momentum"], group["compute_dtype"]) == (3, 1e-6, 0.5, torch.float64)
    assert len(group["params"]) == 1  # min_side 3: the (2, 8) weight goes to AdamW
    cfg = load_config(overrides=["optimizer.name=adam_p0.5", "optimizer.adam_betas=[0.5,0.6]", "optimizer.adam_eps=1e-4"])
    opt = build_optimizer(model, "adam_p0.5", **options_from_config("adam_p0.5", to_container(cfg.optimizer)))
    assert opt.param_groups[0]["adam_betas"] == (0.5, 0.6) and opt.param_groups[0]["adamw_betas"] == (0.9, 0.999)


@pytest.mark.parametrize("key, value, expected", [
    ("momentum", 2, "[0, 1)"), ("momentum", 1.0, "[0, 1)"), ("eps", -1, "(0, ∞)"), ("eps", 0.0, "(0, ∞)"),
    ("betas", [0.9], "two numbers"), ("betas", [0.9, 1.0], "two numbers"), ("ns_steps", 0, "integer >= 1"),
    ("lr", float("nan"), "(0, ∞)"), ("lr", float("inf"), "(0, ∞)"), ("lr", 0.0, "(0, ∞)"),
    ("weight_decay", -1e-4, "[0, ∞)"), ("relaxation", 1.5, "[0, 1]"), ("guided_modes", 0, "integer >= 1"),
    ("topk", "qr", "one of"), ("spectral_eps", -1.0, "(0, ∞)"), ("adam_betas", [0.9, -0.1], "two numbers"),
])
def test_check_optimizer_options_names_the_key(key, value, expected):
    with pytest.raises(ValueError, match=rf"^optimizer\.{key}=.*: expected .*{__import__('re').escape(expected)}"):
        check_optimizer_options("muon", {"name": "muon", key: value})


def test_check_optimizer_options_accepts_the_defaults_and_refuses_unknowns():
    check_optimizer_options("muon", to_container(load_config().optimizer))
    with pytest.raises(ValueError, match="optimizer.name='sgd'"):
        check_optimizer_options("sgd", {})
    with pytest.raises(ValueError, match="optimizer.foo: unknown option"):
        check_optimizer_options("muon", {"foo": 1})
    with pytest.raises(ValueError, match="SpecMuon: momentum must be a number in"):
        SpecMuon([torch.nn.Parameter(torch.zeros(3, 3))], momentum=1.0)


def test_adam_base_has_its_own_betas_and_eps():
    w = torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64))
    g = torch.randn(4, 3, dtype=torch.float64)
    opt = Muon([w], base="adam", power=1.0, adam_betas=(0.5, 0.6), adam_eps=1e-3, adamw_betas=(0.9, 0.999))
    for _ in range(2):
        w.grad = g.clone()
        opt.step()
    torch.testing.assert_close(opt.state[w]["exp_avg"], (0.5 * 0.5 + 0.5) * g)
    torch.testing.assert_close(opt.state[w]["exp_avg_sq"], (0.6 * 0.4 + 0.4) * g**2)


def test_old_state_dict_without_adam_options_loads():
    w = torch.nn.Parameter(torch.zeros(3, 3))
    opt = Muon([w], base="adam", adamw_betas=(0.8, 0.9), adamw_eps=1e-6)
    saved = opt.state_dict()
    for group in saved["param_groups"]:
        del group["adam_betas"], group["adam_eps"], group["base"], group["power"]
    opt.load_state_dict(saved)
    group = opt.param_groups[0]
    assert (group["adam_betas"], group["adam_eps"], group["base"], group["power"]) == ((0.8, 0.9), 1e-6, "momentum", 0.0)


def test_resolve_layout():
    assert resolve_layout(torch.zeros(4, 5, 3, dtype=torch.complex64)) == "per_mode"
    assert resolve_layout(torch.zeros(4, 5, 3), "flatten") == "flatten"
    with pytest.raises(ValueError, match="no matrix layout"):
        resolve_layout(torch.zeros(5))
    with pytest.raises(ValueError, match="layout must be"):
        resolve_layout(torch.zeros(4, 4), "rows")


def test_p0_is_one_polar_factor():
    """spectral_power(G, 0) with Muon's steps and coefficients is Muon's map, polar(G; 5 quintic steps)."""
    G = torch.randn(3, 12, 8, generator=torch.Generator().manual_seed(5))
    mine = spectral_power(G, 0, steps=5, coefficients="quintic")
    torch.testing.assert_close(mine, polar(G, steps=5, coefficients="quintic", compute_dtype=torch.float32), atol=1e-5, rtol=0)
    w = torch.nn.Parameter(torch.zeros(12, 8))
    w.grad = G[0].clone()
    Muon([w], lr=1.0, momentum=0.0, nesterov=False, adjust_lr="none", compute_dtype=torch.float32).step()
    torch.testing.assert_close(-w.detach(), mine[0], atol=1e-5, rtol=0)


class FrobeniusSGD(SpectralOptimizer):
    """A variant written only as pieces: D = G, O = √min(rows, cols) · M / ‖M‖_F per matrix."""

    OPTIONS = SPECTRAL + ADAMW_GROUP
    MAP_OPTIONS = ("eps",)

    def direction(self, grads, states, group):
        return gradient_direction(grads, states)

    def map_work(self, M, items, context):
        rows, cols = M.shape[-2:]
        eps = items[0][1]["eps"]
        return Work(inputs=(M,), fn=lambda X: (X * math.sqrt(min(rows, cols)) / (frobenius_norms(X) + eps),),
                    outputs=(((rows, cols), M.dtype),), cost=1.0)


def test_a_new_variant_is_its_pieces_and_the_skeleton_does_the_rest():
    """Bucketing across parameters, per-mode layouts, the LR rule, weight decay and the AdamW part come
    from the skeleton; the subclass only names its direction and map."""
    torch.manual_seed(3)
    linear = torch.nn.Parameter(torch.randn(16, 4, dtype=torch.float64))
    spectral = torch.nn.Parameter(torch.randn(4, 16, 3, 2, dtype=torch.complex128))
    bias = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    before = [p.detach().clone() for p in (linear, spectral)]
    for p in (linear, spectral, bias):
        p.grad = torch.randn_like(p)
    opt = FrobeniusSGD([{"params": [linear, spectral]}, {"params": [bias], "use_spectral": False}],
                       lr=0.1, weight_decay=0.1, eps=1e-12)
    opt.step()
    G = linear.grad
    torch.testing.assert_close(linear.detach(), 0.99 * before[0] - 0.1 * 2.0 * 2.0 * G / G.norm())  # √(16/4) · √min(16, 4)
    modes = spectral.grad.permute(2, 3, 0, 1)
    expected = 0.99 * before[1].permute(2, 3, 0, 1) - 0.1 * 2.0 * 2.0 * modes / torch.linalg.matrix_norm(modes)[..., None, None]
    torch.testing.assert_close(spectral.detach().permute(2, 3, 0, 1), expected)
    torch.testing.assert_close(bias.detach(), -0.1 * bias.grad.sign() * (1 - 1e-8 / (bias.grad.abs() + 1e-8)), atol=1e-9, rtol=0)


def test_a_registry_line_makes_a_variant_an_optimizer_name(monkeypatch):
    """docs/optim.md's worked example: one Entry makes the variant buildable by name, with labelled groups, the
    AdamW part and the config keys of its table; a non-spectral torch optimizer takes every parameter."""
    monkeypatch.setitem(REGISTRY, "frobenius_sgd", Entry(FrobeniusSGD, SPECTRAL, spectral=True))
    monkeypatch.setitem(REGISTRY, "sgd", Entry(torch.optim.SGD, (
        Option("lr", float, 0.1, "SGD's step size", POSITIVE), Option("momentum", float, 0.0, "SGD's momentum", FRACTION))))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))
    check_optimizer_options("frobenius_sgd", {"name": "frobenius_sgd", "lr": 0.1, "spectral_eps": 1e-12})
    opt = build_optimizer(model, "frobenius_sgd", labels={"1.weight": "adamw"}, lr=0.1, spectral_eps=1e-12, adamw_lr=1e-3)
    assert isinstance(opt, FrobeniusSGD) and [len(g["params"]) for g in opt.param_groups] == [1, 3]
    assert opt.param_groups[1]["lr"] == 1e-3 and opt.param_groups[0]["eps"] == 1e-12
    sgd = build_optimizer(model, "sgd", lr=0.5, momentum=0.9)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.9
    assert len(sgd.param_groups[0]["params"]) == 4
    with pytest.raises(ValueError, match=r"^sgd: unknown options \['nesterov'\]"):
        build_optimizer(model, "sgd", nesterov=True)


def test_every_name_builds_what_it_did():
    """The registry's names and classes: adamw is torch's, the family fixes base and p, muon is momentum_p0."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))
    assert OPTIMIZERS[:4] == ("adamw", "muon", "specmuon", "soap") and set(OPTIMIZERS[4:]) == set(FAMILY)
    assert type(build_optimizer(model, "adamw", betas=[0.8, 0.9])) is torch.optim.AdamW
    assert build_optimizer(model, "adamw", betas=[0.8, 0.9]).param_groups[0]["betas"] == (0.8, 0.9)
    for name, (base, power) in FAMILY.items():
        group = build_optimizer(model, name).param_groups[0]
        assert (group["base"], group["power"]) == (base, power)
    muon, p0 = build_optimizer(model, "muon").param_groups, build_optimizer(model, "momentum_p0").param_groups
    assert [{k: v for k, v in g.items() if k != "params"} for g in muon] == [{k: v for k, v in g.items() if k != "params"} for g in p0]
    assert type(build_optimizer(model, "specmuon")) is SpecMuon
    with pytest.raises(ValueError, match=r"^optimizer name 'sgd': expected one of \('adamw', 'muon', 'specmuon', 'soap', "):
        build_optimizer(model, "sgd")


def test_specmuon_state_keeps_the_keys_of_earlier_checkpoints():
    """The step control's state is where checkpoints before its slot existed put it: state["loss_energy"] = {ema,
    count}, and per parameter r (the control), basis (the warm start) and momentum_buffer (the heavy ball)."""
    w = torch.nn.Parameter(torch.randn(5, 4, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    opt = SpecMuon([{"params": [w]}, {"params": [b], "use_spectral": False}], lr=0.01, guided_modes=2)
    for _ in range(2):
        w.grad, b.grad = torch.randn_like(w), torch.randn_like(b)
        opt.step(lambda: torch.tensor(0.5))
    state = opt.state_dict()["state"]
    assert set(state) == {"loss_energy", 0, 1} and set(state["loss_energy"]) == {"ema", "count"}
    assert set(state[0]) == {"r", "basis", "momentum_buffer"} and state[0]["r"].shape == (1, 2)
    assert int(state["loss_energy"]["count"]) == 2
