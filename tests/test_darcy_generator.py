"""Tests for the FNO-protocol Darcy generator: GRF statistics, FD accuracy, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from opspec.data.generate.darcy import darcy_matrix, generate_darcy, solve_darcy
from opspec.data.generate.grf import sample_grf_2d

PI = np.pi


def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodal grid x_i = i / (s - 1), indexed [i, j] with i along x and j along y."""
    t = np.linspace(0.0, 1.0, s)
    return np.meshgrid(t, t, indexing="ij")


def _manufactured(s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficient a, forcing f = -div(a grad u*) and exact solution u* on the s x s grid.

    a  = 1 + 0.5 sin(2 pi x) cos(pi y)          (smooth, 0.5 <= a <= 1.5)
    u* = sin(pi x) sin(pi y) exp(x)              (zero on the boundary)
    """
    x, y = _grid(s)
    sx, cx, sy, cy = np.sin(PI * x), np.cos(PI * x), np.sin(PI * y), np.cos(PI * y)
    ex = np.exp(x)
    a = 1.0 + 0.5 * np.sin(2 * PI * x) * cy
    a_x = PI * np.cos(2 * PI * x) * cy
    a_y = -0.5 * PI * np.sin(2 * PI * x) * sy
    u = sx * sy * ex
    u_x = ex * sy * (PI * cx + sx)
    u_y = PI * ex * sx * cy
    lap_u = ex * sy * ((1.0 - 2.0 * PI**2) * sx + 2.0 * PI * cx)
    f = -(a * lap_u + a_x * u_x + a_y * u_y)
    return a, f, u


def test_manufactured_solution_converges_at_second_order() -> None:
    errors = []
    for s in (17, 33, 65, 129):
        a, f, u_exact = _manufactured(s)
        u = solve_darcy(a, f)
        errors.append(np.abs(u - u_exact).max())
    errors = np.array(errors)
    orders = np.log2(errors[:-1] / errors[1:])
    assert errors[-1] < 1e-3, errors
    assert np.all((orders > 1.8) & (orders < 2.2)), (errors, orders)


def test_constant_coefficient_matrix_is_scaled_five_point_laplacian() -> None:
    s, c = 9, 2.5
    m, h = s - 2, 1.0 / (s - 1)
    second_diff = sp.diags([2.0 * np.ones(m), -np.ones(m - 1), -np.ones(m - 1)], [0, 1, -1])
    eye = sp.identity(m)
    expected = c / h**2 * (sp.kron(second_diff, eye) + sp.kron(eye, second_diff))
    got = darcy_matrix(np.full((s, s), c))
    assert isinstance(got, sp.csr_matrix)
    np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-14, atol=0.0)


@pytest.fixture(scope="module")
def generated() -> tuple[np.ndarray, np.ndarray]:
    batches = list(generate_darcy(7, 33, seed=123, batch_size=3, progress=False))
    assert [b[0].shape[0] for b in batches] == [3, 3, 1]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_generated_fields_have_expected_values_and_shapes(generated) -> None:
    a, u = generated
    assert a.shape == u.shape == (7, 33, 33)
    assert a.dtype == u.dtype == np.float64
    assert set(np.unique(a).tolist()) == {3.0, 12.0}
    for k in range(a.shape[0]):
        assert 0.1 < np.mean(a[k] == 12.0) < 0.9
    boundary = np.ones((33, 33), dtype=bool)
    boundary[1:-1, 1:-1] = False
    assert np.all(u[:, boundary] == 0.0)
    assert np.all(u[:, 1:-1, 1:-1] > 0.0)


def test_generated_solution_satisfies_discrete_pde(generated) -> None:
    a, u = generated
    for k in range(a.shape[0]):
        residual = darcy_matrix(a[k]) @ u[k, 1:-1, 1:-1].ravel() - 1.0
        assert np.abs(residual).max() < 1e-10


def test_generation_is_reproducible_and_batch_size_independent(generated) -> None:
    a, u = generated
    again = list(generate_darcy(7, 33, seed=123, batch_size=1, progress=False))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in again]), a)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in again]), u)
    (a_one, u_one), = generate_darcy(7, 33, seed=123, batch_size=32, progress=False)
    np.testing.assert_array_equal(a_one, a)
    np.testing.assert_array_equal(u_one, u)
    (a_prefix, _), = generate_darcy(4, 33, seed=123, batch_size=32, progress=False)
    np.testing.assert_array_equal(a_prefix, a[:4])
    (a_other, u_other), = generate_darcy(7, 33, seed=124, batch_size=32, progress=False)
    assert not np.array_equal(a_other, a)
    assert not np.array_equal(u_other, u)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(n=0, resolution=33, seed=0), "n"),
        (dict(n=2, resolution=2, seed=0), "resolution"),
        (dict(n=2, resolution=33, seed=0, batch_size=0), "batch_size"),
        (dict(n=2, resolution=33, seed=-1), "seed"),
    ],
)
def test_invalid_arguments_raise_eagerly(kwargs, name) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        generate_darcy(**kwargs)


def _target_std(k1: np.ndarray, k2: np.ndarray, alpha: float, tau: float) -> np.ndarray:
    """KL standard deviation tau^(alpha-1) (pi^2 |k|^2 + tau^2)^(-alpha/2) of mode (k1, k2)."""
    return tau ** (alpha - 1) * (PI**2 * (k1**2 + k2**2) + tau**2) ** (-alpha / 2)


@pytest.mark.parametrize(("alpha", "tau"), [(2.0, 3.0), (3.0, 5.0)])
def test_grf_mode_variances_match_covariance_operator(alpha: float, tau: float) -> None:
    n, s = 4000, 17
    psi = sample_grf_2d(n, s, np.random.default_rng(7), alpha=alpha, tau=tau)
    assert psi.shape == (n, s, s) and psi.dtype == np.float64
    # Project onto the L2-normalised Neumann eigenfunctions phi_k = sqrt(2) cos(pi k x), phi_0 = 1,
    # with trapezoid weights, under which the sampled cosines are exactly orthogonal on the nodes.
    x = np.linspace(0.0, 1.0, s)
    w = np.full(s, 1.0 / (s - 1))
    w[[0, -1]] *= 0.5
    modes = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (0, 3), (2, 3)]
    coeffs = {}
    for k1, k2 in modes:
        phi1 = (np.sqrt(2.0) if k1 else 1.0) * np.cos(PI * k1 * x)
        phi2 = (np.sqrt(2.0) if k2 else 1.0) * np.cos(PI * k2 * x)
        coeffs[k1, k2] = np.einsum("nij,i,j->n", psi, w * phi1, w * phi2)
    # The mean (0, 0) mode is dropped: each sample's trapezoid mean is zero.
    assert np.abs(coeffs[0, 0]).max() < 1e-12
    for k1, k2 in modes[1:]:
        ratio = coeffs[k1, k2].var() / _target_std(k1, k2, alpha, tau) ** 2
        assert abs(ratio - 1.0) < 0.12, ((k1, k2), ratio)  # sampling error ~ sqrt(2/n) = 2.2%
    corr = np.corrcoef(coeffs[1, 0], coeffs[0, 1])[0, 1]
    assert abs(corr) < 0.08  # independent modes; sampling error ~ 1/sqrt(n) = 1.6%


def test_grf_pointwise_variance_matches_kl_sum() -> None:
    n, s, alpha, tau = 4000, 17, 2.0, 3.0
    psi = sample_grf_2d(n, s, np.random.default_rng(11), alpha=alpha, tau=tau)
    assert abs(psi.mean()) < 5.0 * psi.std() / np.sqrt(n)
    k1, k2 = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    var_k = _target_std(k1, k2, alpha, tau) ** 2
    var_k[0, 0] = 0.0
    for i, j in [(0, 0), (8, 8), (3, 12)]:
        phi_i = np.where(k1 > 0, 2.0, 1.0) * np.cos(PI * k1 * i / (s - 1)) ** 2
        phi_j = np.where(k2 > 0, 2.0, 1.0) * np.cos(PI * k2 * j / (s - 1)) ** 2
        expected = np.sum(var_k * phi_i * phi_j)
        ratio = psi[:, i, j].var() / expected
        assert abs(ratio - 1.0) < 0.12, ((i, j), ratio)
