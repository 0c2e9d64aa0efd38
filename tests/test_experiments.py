"""Tiny runs of the two claim-testing experiments in tools/ (exp_condition_number, exp_stable_step)."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest


def _load(name: str):
    """The tool `tools.<name>` (tools/ is a package)."""
    return importlib.import_module(f"tools.{name}")


@pytest.fixture(scope="module")
def cond():
    return _load("exp_condition_number")


@pytest.fixture(scope="module")
def stable():
    return _load("exp_stable_step")


# ---------------------------------------------------------------------------------------------
# exp_condition_number


def test_polar_svd_is_the_polar_factor(cond):
    G = np.random.default_rng(0).standard_normal((50, 5))
    Q = cond.polar_svd(G)
    np.testing.assert_allclose(Q.T @ Q, np.eye(5), atol=1e-12)
    S = Q.T @ G  # G = Q S with S symmetric positive definite
    np.testing.assert_allclose(S, S.T, atol=1e-12)
    assert np.linalg.eigvalsh(S).min() > 0
    s = np.linalg.svd(cond.polar_ns(G), compute_uv=False)  # Newton–Schulz: the quintic's band, not 1
    assert 0.6 < s.min() and s.max() < 1.3


def test_gd_count_grows_with_kappa_and_orthogonalized_count_does_not(cond):
    gd = cond.Method("gd", "gd", [0.5, 0.707, 0.841], [1.0])
    orth = cond.Method("orth", "orth", [0.5, 0.707, 1.0, 1.41, 2.0], [0.55, 0.6, 0.65, 0.7, 0.75, 0.8])
    X0, Y0 = cond.initial_factors(50, 5, 1e-3, seed=0)
    counts = {}
    for kappa in (10, 100):
        M = cond.make_target(kappa, 50, 5, seed=0)
        counts["gd", kappa] = cond.tune(gd, M, X0, Y0, max_iter=5000, tol=1e-6).iterations
        counts["orth", kappa] = cond.tune(orth, M, X0, Y0, max_iter=5000, tol=1e-6).iterations
    assert None not in counts.values(), counts
    assert counts["gd", 100] > 4 * counts["gd", 10], counts
    assert counts["orth", 100] < 2 * counts["orth", 10], counts
    assert counts["orth", 100] < counts["gd", 10], counts


def test_constant_orthogonalized_step_cannot_reach_the_target(cond):
    M = cond.make_target(10, 50, 5, seed=0)
    X0, Y0 = cond.initial_factors(50, 5, 1e-3, seed=0)
    assert cond.iterations_to_target(M, X0, Y0, "orth", 0.01, decay=1.0, max_iter=2000) is None
    assert cond.iterations_to_target(M, X0, Y0, "orth", 0.5, decay=0.7, max_iter=2000) is not None


def test_target_has_the_requested_condition_number(cond):
    s = np.linalg.svd(cond.make_target(1000, 50, 5, seed=3), compute_uv=False)
    assert s[0] == pytest.approx(1.0) and s[0] / s[4] == pytest.approx(1000.0)
    assert s[5] < 1e-12


def test_condition_number_cli_writes_table_and_plot(cond, tmp_path, capsys):
    md, png = tmp_path / "t.md", tmp_path / "p.png"
    cond.main(["--kappas", "10", "30", "--methods", "gd", "orth_svd", "--n", "12", "--r", "2", "--repeats", "1",
               "--tol", "1e-4", "--plot", str(png), "--out-md", str(md)])
    text = md.read_text()
    assert re.search(r"^\|\s+30 \|", text, re.M) and "**Claim" in text and png.stat().st_size > 0
    assert text.strip() in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# exp_stable_step


def test_bisect_limit_finds_a_threshold(stable):
    assert stable.bisect_limit(lambda eta: eta <= 0.37) == pytest.approx(0.37, rel=2e-4)
    assert stable.bisect_limit(lambda eta: eta <= 3e-6) == pytest.approx(3e-6, rel=2e-4)  # bracket widens


def test_gd_limit_is_two_over_the_largest_curvature(stable):
    n = 8
    h = stable.log_spectrum(2.0, n)
    h = h / h.mean()
    H, E0 = stable.make_problem(h, stable.log_spectrum(1.0, n), seed=0)
    eta = stable.bisect_limit(lambda e: stable.stays_below_start(H, E0, e, "gd", 200))
    assert 2 / h.max() * (1 - 1e-3) <= eta <= 2 / h.max() * 1.03


def test_muon_limit_follows_the_mean_singular_value(stable):
    n = 8
    h = stable.log_spectrum(1.0, n)
    h = h / h.mean()
    H, E0 = stable.make_problem(h, stable.log_spectrum(2.0, n), seed=1)
    sigma = np.linalg.svd(H @ E0, compute_uv=False)
    eta = stable.bisect_limit(lambda e: stable.stays_below_start(H, E0, e, "muon", 200))
    assert eta == pytest.approx(2 * sigma.mean() / h.mean(), rel=0.02)
    assert eta < 0.5 * 2 * sigma.max() / h.mean()  # not the largest singular value's prediction
    assert eta == pytest.approx(stable.muon_one_step_bound(H, E0), rel=1e-3)


def test_muon_step_keeps_the_loss_bounded_past_its_limit(stable):
    n = 6
    H, E0 = stable.make_problem(np.ones(n), np.ones(n), seed=0)
    assert stable.stays_below_start(H, E0, 1.9, "muon", 50)
    assert not stable.stays_below_start(H, E0, 2.1, "muon", 50)
    assert stable.stays_below_start(H, E0, 2.1, "muon", 50, max_rise=1.5)  # loss rises a bit, never runs off


def test_stable_step_cli_writes_table_and_plot(stable, tmp_path):
    md, png = tmp_path / "t.md", tmp_path / "p.png"
    stable.main(["--n", "6", "--spreads", "0", "1", "--steps", "50", "--plot", str(png), "--out-md", str(md)])
    text = md.read_text()
    assert len(re.findall(r"^\| A\s+\|", text, re.M)) == 2 and len(re.findall(r"^\| B\s+\|", text, re.M)) == 2
    assert "**Claim held**" in text
    assert png.stat().st_size > 0
