"""SpecMuon's momentum_placement: "after" (the paper's heavy ball after the map) and "before" (Muon's EMA
momentum with Nesterov into the guided map, no heavy ball), against float64 hand computations.

"after" unchanged: tests/test_full_batch.py checks 30 steps of the default (μ = 0.9) against a numpy
transcription of the paper's heavy-ball update, and tests/test_specmuon.py one step against a float64 SVD.
"""

from __future__ import annotations

import math

import pytest
import torch
from neuralop.models import FNO

from opspec.core.errors import OpspecError
from opspec.optim import Muon, SpecMuon, build_optimizer, check_optimizer_options, options_from_config
from opspec.optim.polar import coefficient_schedule
from opspec.training.config import load_config, to_container
from opspec.training.trainer import resume_changes

SHAPE = (8, 5)  # a linear weight (out, in): adjust_lr "original" scales its step by √(8/5)
SCALE = math.sqrt(8 / 5)


def _gradients(count: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*SHAPE, dtype=torch.float64, generator=g) for _ in range(count)]


def _run(opt: torch.optim.Optimizer, w: torch.nn.Parameter, grads: list[torch.Tensor], loss: float = 0.5) -> None:
    for g in grads:
        w.grad = g.clone()
        opt.step(lambda: torch.tensor(loss, dtype=torch.float64))


def _quintic(s: torch.Tensor) -> torch.Tensor:
    """Newton–Schulz's scalar map on singular values already normalized by their Frobenius norm."""
    for a, b, c in coefficient_schedule("quintic", 5):
        s = a * s + b * s**3 + c * s**5
    return s


def test_before_with_the_control_off_is_nesterov_ema_then_the_guided_polar_factor():
    """C = 1e12 makes r̃/E = 1 to ~1e-12, so each guided mode moves by exactly 1, the rest by Newton–Schulz's
    value, of the polar factor of (1 − μ)G + μB with B ← μB + (1 − μ)G; no heavy ball; decoupled decay."""
    lr, mu, wd, k = 0.05, 0.9, 0.1, 2
    grads = _gradients(3)
    w0 = torch.randn(*SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    w = torch.nn.Parameter(w0.clone())
    opt = SpecMuon([w], lr=lr, momentum=mu, weight_decay=wd, guided_modes=k, topk="svd", energy_shift=1e12,
                   eps=1e-15, compute_dtype=torch.float64, momentum_placement="before")
    _run(opt, w, grads)

    want, B = w0.clone(), torch.zeros_like(w0)
    for g in grads:
        B = mu * B + (1 - mu) * g
        D = (1 - mu) * g + mu * B
        U, S, Vh = torch.linalg.svd(D, full_matrices=False)
        weights = torch.cat((torch.ones(k, dtype=S.dtype), _quintic(S / S.norm())[k:]))
        want = (1 - lr * wd) * want - lr * SCALE * (U * weights) @ Vh
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], B, rtol=1e-14, atol=0)  # EMA with (1 − μ) dampening
    torch.testing.assert_close(w.detach(), want, rtol=0, atol=1e-10)


def test_before_keeps_muons_momentum_buffer_bitwise():
    """The same direction piece as Muon's (directions.momentum_direction): the same buffer, bit for bit."""
    lr, mu = 0.05, 0.9
    grads = _gradients(3, seed=1)
    a, b = (torch.nn.Parameter(torch.zeros(*SHAPE, dtype=torch.float64)) for _ in range(2))
    spec = SpecMuon([a], lr=lr, momentum=mu, momentum_placement="before")
    muon = Muon([b], lr=lr, momentum=mu)
    _run(spec, a, grads)
    _run(muon, b, grads)
    assert torch.equal(spec.state[a]["momentum_buffer"], muon.state[b]["momentum_buffer"])


@pytest.mark.parametrize("nesterov", [True, False])
def test_before_shrinks_with_sigma_of_the_momentum_direction_and_gamma_lr_times_scale(nesterov):
    """Two steps with the control on: each guided mode j moves by r_j / (1 + γσ_j / (2E²)) / E along u_j v_jᴴ,
    σ_j and u_j, v_j those of the mapped direction (not the raw gradient), γ = lr·√(8/5)."""
    lr, mu, C, loss, k = 0.3, 0.9, 0.1, 0.5, 2
    E = math.sqrt(loss + C)
    gamma = lr * SCALE
    w = torch.nn.Parameter(torch.zeros(*SHAPE, dtype=torch.float64))
    opt = SpecMuon([w], lr=lr, momentum=mu, nesterov=nesterov, guided_modes=k, topk="svd", energy_shift=C,
                   loss_ema=0.0, eps=1e-15, compute_dtype=torch.float64, momentum_placement="before")
    B = torch.zeros(SHAPE, dtype=torch.float64)
    for step, g in enumerate(_gradients(2, seed=2)):
        r = torch.full((k,), E, dtype=torch.float64) if step == 0 else opt.state[w]["r"][0].clone()
        before = w.detach().clone()
        _run(opt, w, [g], loss)
        B = mu * B + (1 - mu) * g
        D = (1 - mu) * g + mu * B if nesterov else B
        U, S, Vh = torch.linalg.svd(D, full_matrices=False)
        moved = U[:, :k].mT @ ((before - w.detach()) / gamma) @ Vh[:k].mT  # u_iᵀ Δ v_j over the guided modes
        want = r / (1 + gamma * S[:k] / (2 * E**2)) / E
        assert (1 - want).min() > 0.05  # the shrink is far from inert here
        torch.testing.assert_close(moved, torch.diag(want), rtol=0, atol=1e-12)


@pytest.mark.parametrize("nesterov", [True, False])
def test_without_momentum_both_placements_take_the_same_steps(nesterov):
    """μ = 0: the EMA is G and the heavy ball is O, so "before" is the paper's method, bit for bit."""
    x, y = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(5)), torch.zeros(6, 1, 8, 8)
    results = {}
    for placement in ("after", "before"):
        torch.manual_seed(4)
        model = FNO(n_modes=(4, 4), hidden_channels=8, n_layers=2, in_channels=1, out_channels=1)
        opt = build_optimizer(model, "specmuon", lr=0.02, momentum=0.0, nesterov=nesterov, weight_decay=1e-3,
                              momentum_placement=placement)
        for _ in range(3):
            def closure():
                opt.zero_grad()
                loss = ((model(x) - y) ** 2).mean()
                loss.backward()
                return loss
            opt.step(closure)
        results[placement] = (model.state_dict(), [st["r"] for st in opt.state.values() if "r" in st])
    (after, r_after), (before, r_before) = results["after"], results["before"]
    for key, value in after.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, before[key]), key
    assert len(r_after) > 0 and all(torch.equal(a, b) for a, b in zip(r_after, r_before))


def test_placements_differ_with_momentum():
    """The check above is not vacuous: with μ = 0.9 the two placements part after the first step."""
    steps = {}
    for placement in ("after", "before"):
        w = torch.nn.Parameter(torch.zeros(*SHAPE, dtype=torch.float64))
        _run(SpecMuon([w], lr=0.05, momentum_placement=placement), w, _gradients(2, seed=3))
        steps[placement] = w.detach()
    assert (steps["after"] - steps["before"]).abs().max() > 1e-3


def test_placement_and_nesterov_come_from_a_config_and_bad_values_are_refused():
    cfg = load_config(overrides=["optimizer.name=specmuon", "optimizer.momentum_placement=before",
                                 "optimizer.nesterov=false"])
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    opt = build_optimizer(model, "specmuon", **options_from_config("specmuon", to_container(cfg.optimizer)))
    assert (opt.param_groups[0]["momentum_placement"], opt.param_groups[0]["nesterov"]) == ("before", False)
    defaults = build_optimizer(model, "specmuon", **options_from_config("specmuon", to_container(load_config(
        overrides=["optimizer.name=specmuon"]).optimizer))).param_groups[0]
    assert (defaults["momentum_placement"], defaults["nesterov"]) == ("after", True)
    with pytest.raises(ValueError, match=r"^optimizer\.momentum_placement='sideways': expected one of \['after', "
                                         r"'before'\]"):
        check_optimizer_options("specmuon", {"name": "specmuon", "momentum_placement": "sideways"})
    with pytest.raises(OpspecError, match="optimizer.momentum_placement"):
        load_config(overrides=["optimizer.momentum_placement=sideways"])


def test_a_resume_cannot_change_the_placement():
    """Both placements keep state["momentum_buffer"] (the EMA of G, or the heavy ball of O): a resume that
    changed the placement would read one as the other, so the run's config refuses it."""
    saved = to_container(load_config(overrides=["optimizer.name=specmuon"]))
    with pytest.raises(OpspecError, match=r"optimizer\.momentum_placement='before' would change the run \(it has "
                                          r"'after'\)"):
        resume_changes(saved, load_config(overrides=["optimizer.momentum_placement=before"], base=saved), 1, "run")


def test_a_state_dict_brings_its_placement_and_old_ones_load_as_after():
    """torch.optim's rule: the saved groups' options come back with the state, so a buffer is never read
    under the other placement; a state dict from before the option existed is the paper's ("after")."""
    w = torch.nn.Parameter(torch.zeros(*SHAPE, dtype=torch.float64))
    source = SpecMuon([w], lr=0.05)
    _run(source, w, _gradients(1))
    saved = source.state_dict()
    target = SpecMuon([w], lr=0.05, momentum_placement="before", nesterov=False)
    target.load_state_dict(saved)
    assert (target.param_groups[0]["momentum_placement"], target.param_groups[0]["nesterov"]) == ("after", True)
    for group in saved["param_groups"]:
        del group["momentum_placement"], group["nesterov"]
    target = SpecMuon([w], lr=0.05, momentum_placement="before")
    target.load_state_dict(saved)
    assert (target.param_groups[0]["momentum_placement"], target.param_groups[0]["nesterov"]) == ("after", True)
