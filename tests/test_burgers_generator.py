"""Tests for the FNO-protocol Burgers generator: Cole–Hopf accuracy, conservation, GRF statistics, files, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from opspec.data import CanonicalFile, OperatorDataset
from opspec.data.generate import generate_dataset
from opspec.data.generate.burgers import generate_burgers, grf_std_1d, sample_grf_1d, solve_burgers
from opspec.training.trainer import main as train_main

PI = np.pi


def cole_hopf(s: int, nu: float, t: float) -> np.ndarray:
    """Exact Burgers solution u = −2ν φ_x / φ on x_j = j / s from the heat-equation solution

    φ(x, t) = 2 + e^{−ν(2π)²t} cos 2πx + ½ e^{−ν(4π)²t} sin 4πx   (φ ≥ 1/2 > 0, so u is smooth and periodic).
    """
    x = np.arange(s) / s
    e1, e2 = np.exp(-nu * (2 * PI) ** 2 * t), np.exp(-nu * (4 * PI) ** 2 * t)
    phi = 2.0 + e1 * np.cos(2 * PI * x) + 0.5 * e2 * np.sin(4 * PI * x)
    phi_x = -2 * PI * e1 * np.sin(2 * PI * x) + 2 * PI * e2 * np.cos(4 * PI * x)
    return -2.0 * nu * phi_x / phi


def _cole_hopf_error(s: int, dt: float, nu: float = 0.1) -> float:
    u1 = solve_burgers(torch.from_numpy(cole_hopf(s, nu, 0.0))[None], nu, 1.0, dt)[0].numpy()
    exact = cole_hopf(s, nu, 1.0)
    return float(np.abs(u1 - exact).max() / np.abs(exact).max())


def test_cole_hopf_error_is_small_and_fourth_order_in_time() -> None:
    errors = np.array([_cole_hopf_error(64, dt) for dt in (1e-2, 5e-3, 2.5e-3)])
    orders = np.log2(errors[:-1] / errors[1:])
    assert errors[-1] < 1e-8, errors
    assert np.all(orders > 3.7), (errors, orders)


def test_cole_hopf_error_decreases_spectrally_with_resolution() -> None:
    errors = np.array([_cole_hopf_error(s, 1e-3) for s in (16, 32, 64)])
    assert np.all(errors[1:] < errors[:-1] / 10), errors
    assert errors[-1] < 1e-9, errors


def test_final_time_is_hit_exactly_when_dt_does_not_divide_it() -> None:
    u0 = torch.from_numpy(cole_hopf(32, 0.1, 0.0))[None]
    # 1 / 0.3 is not an integer: four equal steps of 0.25 are taken, exactly as with dt = 0.25.
    assert torch.equal(solve_burgers(u0, 0.1, 1.0, 0.3), solve_burgers(u0, 0.1, 1.0, 0.25))


def test_spatial_mean_is_conserved_and_the_field_evolves() -> None:
    u0 = np.stack([sample_grf_1d(128, np.random.default_rng(k)) + 0.3 for k in range(4)])
    u1 = solve_burgers(torch.from_numpy(u0), 0.1, 1.0, 1e-3).numpy()
    np.testing.assert_allclose(u1.mean(axis=1), 0.3, rtol=0, atol=1e-13)
    assert np.all(np.abs(u1 - u0).max(axis=1) > 0.05 * np.abs(u0 - 0.3).max(axis=1))


def test_grf_mode_variances_match_covariance() -> None:
    n, s = 3000, 32
    u = np.stack([sample_grf_1d(s, np.random.default_rng(k)) for k in range(n)])
    x = np.arange(s) / s
    assert np.abs(u.mean(axis=1)).max() < 1e-14  # the mean mode is dropped
    target = grf_std_1d(s) ** 2
    for m in (1, 2, 5):
        for basis in (np.cos, np.sin):
            coeff = np.sqrt(2.0) * (u * basis(2 * PI * m * x)).mean(axis=1)  # projection on √2 cos / √2 sin
            assert abs(coeff.var() / target[m] - 1.0) < 0.1, (m, basis, coeff.var() / target[m])
    assert target[1] == pytest.approx((25.0 / (4 * PI**2 + 25.0)) ** 2)  # σ² (4π² + τ²)^(−γ), 625 (4π² + 25)^(−2)
    assert np.all(np.abs(np.fft.rfft(u[:5], axis=1))[:, (s - 1) // 3 + 1 :] < 1e-12)  # inside the 2/3 rule


def test_generation_is_reproducible_and_batch_size_independent() -> None:
    def run(n, batch_size, seed=5):
        batches = list(generate_burgers(n, 64, seed, time_step=1e-2, batch_size=batch_size, progress=False))
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    a, u = run(5, 2)
    a1, u1 = run(5, 5)
    np.testing.assert_array_equal(a1, a)
    np.testing.assert_allclose(u1, u, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(run(3, 5)[0], a[:3])
    assert not np.array_equal(run(5, 5, seed=6)[0], a)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(n=0, resolution=32, seed=0), "n"),
        (dict(n=2, resolution=3, seed=0), "resolution"),
        (dict(n=2, resolution=32, seed=0, viscosity=0.0), "viscosity"),
        (dict(n=2, resolution=32, seed=0, time_step=-1e-3), "time_step"),
    ],
)
def test_invalid_arguments_raise_eagerly(kwargs, name) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        generate_burgers(**kwargs)


@pytest.fixture(scope="module")
def burgers_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("burgers") / "burgers64.h5"
    return generate_dataset("burgers", path, resolution=64, n_train=12, n_test=6, seed=1, progress=False, time_step=1e-2)


def test_canonical_file_layout(burgers_file) -> None:
    f = CanonicalFile(burgers_file)
    assert f.problem == "burgers" and f.grid == "periodic" and f.space_dims == ("x",) and f.grid_size == 64
    assert f.dims["train"]["a"] == f.dims["train"]["u"] == ("sample", "x")
    assert f.attrs["viscosity"] == 0.1 and f.attrs["time"] == 1.0 and f.attrs["grf_sigma"] == 25.0
    assert f.attrs["time_step"] == 1e-2 and f.attrs["seed"] == 1 and f.attrs["generator"].endswith("burgers")
    np.testing.assert_allclose(f.coords(32)["x"], np.arange(32) / 32)
    a, u = OperatorDataset(f, "test", 32)[[0, 1]]
    assert a.shape == u.shape == (2, 1, 32)
    (_, u_ref), = generate_burgers(18, 64, 1, time_step=1e-2, batch_size=18, progress=False)
    np.testing.assert_allclose(f.read("test", "u"), u_ref[12:].astype(np.float32))


def test_tiny_training_run(burgers_file, tmp_path) -> None:
    overrides = [
        "data.problem=burgers", f"data.path={burgers_file}", "data.generate=false", "data.train_resolution=32",
        "data.eval_resolutions=[32,64]", "model.n_modes=[6]", "model.hidden_channels=8", "model.n_layers=2",
        "train.batch_size=4", "train.epochs=2", "train.progress=false", f"out_dir={tmp_path}", "run_name=b",
    ]
    assert train_main(overrides) == 0
    table = json.loads((tmp_path / "b" / "eval.json").read_text())
    assert set(table) == {"32", "64"} and all(0 < v["rel_l2_mean"] < 10 for v in table.values())
    assert train_main([*overrides, "model.n_modes=[6,6]"]) == 2  # one mode count per spatial axis


def test_generate_cli_per_problem_flags(tmp_path, capsys) -> None:
    from opspec.data.__main__ import main as data_main

    out = tmp_path / "b.h5"
    assert data_main(["generate", "burgers", "--resolution", "32", "--n-train", "3", "--n-test", "2",
                      "--viscosity", "0.05", "--time-step", "0.01", "--out", str(out)]) == 0
    f = CanonicalFile(out)
    assert f.grid_size == 32 and f.n_samples("train") == 3 and f.attrs["viscosity"] == 0.05
    assert data_main(["generate", "darcy", "--viscosity", "0.1", "--out", str(tmp_path / "d.h5")]) == 2
    assert data_main(["generate", "burgers", "--t-in", "3", "--out", str(tmp_path / "x.h5")]) == 2
    assert data_main(["generate", "burgers", "--resolution", "32", "--time", "-1", "--out", str(tmp_path / "y.h5")]) == 2
    err = capsys.readouterr().err
    assert "--viscosity: not an option of darcy" in err and "--t-in: not an option of burgers" in err
    assert "time: expected a finite number > 0" in err
    assert not (tmp_path / "y.h5").exists()
