"""Tests for the FNO-protocol Navier–Stokes generator: Taylor–Green decay, snapshot times, advection, files, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from opspec.data import CanonicalFile, OperatorDataset
from opspec.data.generate import generate_dataset
from opspec.data.generate.navier_stokes import (
    generate_navier_stokes,
    grf_std_2d,
    sample_grf_2d_periodic,
    snapshot_steps,
    solve_navier_stokes,
)
from opspec.training.trainer import main as train_main

PI = np.pi


def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(s) / s
    return np.meshgrid(x, x, indexing="ij")


def taylor_green(s: int, nu: float, t: float, m: int = 1) -> np.ndarray:
    """Exact unforced vorticity w = 2k cos(kx) cos(ky) e^{−2νk²t}, k = 2πm (u·∇w ≡ 0, so only diffusion acts)."""
    x, y = _grid(s)
    k = 2 * PI * m
    return 2 * k * np.cos(k * x) * np.cos(k * y) * np.exp(-2 * nu * k**2 * t)


def _taylor_green_errors(dt: float, times=(0.5, 1.0), nu: float = 0.01) -> np.ndarray:
    w0 = torch.from_numpy(taylor_green(16, nu, 0.0))[None]
    w = solve_navier_stokes(w0, times, nu, dt)[0].numpy()
    return np.array([np.abs(w[j] - taylor_green(16, nu, t)).max() / np.abs(taylor_green(16, nu, t)).max()
                     for j, t in enumerate(times)])


def test_taylor_green_decays_exactly_at_second_order() -> None:
    coarse, fine = _taylor_green_errors(0.02), _taylor_green_errors(0.01)
    assert np.all(fine < 5e-6), fine
    np.testing.assert_allclose(coarse / fine, 4.0, rtol=0.05)  # Crank–Nicolson: error ∝ dt²


def test_snapshots_land_on_requested_times_when_dt_does_not_divide_them() -> None:
    assert snapshot_steps([0.0, 0.1, 0.2, 0.5], 0.03) == [(0, 0.0), (4, pytest.approx(0.025)), (4, pytest.approx(0.025)),
                                                           (10, pytest.approx(0.03))]
    nu, times = 0.05, [0.0, 0.1, 0.2, 0.3]
    w0 = torch.from_numpy(taylor_green(16, nu, 0.0))[None]
    w = solve_navier_stokes(w0, times, nu, 0.03)
    assert torch.equal(w, solve_navier_stokes(w0, times, nu, 0.025))  # 0.1 / 0.03 → four steps of 0.025
    torch.testing.assert_close(w[0, 0], w0[0], rtol=0, atol=1e-12)  # t = 0 is the (projected) initial field
    for j, t in enumerate(times):  # CN's error here is 3e-4; a snapshot 0.005 late would be off by 2%
        exact = taylor_green(16, nu, t)
        assert np.abs(w[0, j].numpy() - exact).max() < 1e-3 * np.abs(exact).max(), t


def test_advection_term_matches_analytic_tendency() -> None:
    """w = sin 2πx + cos 4πy: ψ = sin 2πx / 4π² + cos 4πy / 16π², so u·∇w = 1.5 cos 2πx sin 4πy."""
    x, y = _grid(32)
    w0 = np.sin(2 * PI * x) + np.cos(4 * PI * y)
    h = 1e-6
    w1 = solve_navier_stokes(torch.from_numpy(w0)[None], [h], viscosity=0.0, time_step=h)[0, 0].numpy()
    np.testing.assert_allclose((w1 - w0) / h, -1.5 * np.cos(2 * PI * x) * np.sin(4 * PI * y), atol=1e-5)


def test_inviscid_flow_conserves_energy_and_enstrophy() -> None:
    w0 = torch.from_numpy(30.0 * np.stack([sample_grf_2d_periodic(32, np.random.default_rng(k)) for k in range(2)]))
    w = solve_navier_stokes(w0, [0.5], viscosity=0.0, time_step=2e-3)[:, 0]
    w0_hat, w_hat = torch.fft.fft2(w0), torch.fft.fft2(w)
    kx = torch.fft.fftfreq(32, 1 / 32)
    k2 = (kx[:, None] ** 2 + kx[None, :] ** 2).clamp_min(1)
    for q in (lambda z: z.abs().pow(2).sum((1, 2)), lambda z: (z.abs().pow(2) / k2).sum((1, 2))):  # enstrophy, energy
        torch.testing.assert_close(q(w_hat), q(w0_hat), rtol=1e-4, atol=0)  # Heun: O(dt²) drift
    assert torch.all((w - w0).flatten(1).norm(dim=1) > 0.2 * w0.flatten(1).norm(dim=1))  # the flow really moved


def test_grf_mode_variances_match_covariance() -> None:
    n, s = 2000, 16
    w = np.stack([sample_grf_2d_periodic(s, np.random.default_rng(k)) for k in range(n)])
    x, y = _grid(s)
    std = grf_std_2d(s)
    assert std[1, 0] == pytest.approx(7**1.5 * (4 * PI**2 + 49) ** -1.25)
    assert np.abs(w.mean(axis=(1, 2))).max() < 1e-14
    for mx, my in [(1, 0), (0, 1), (1, 1), (-1, 2)]:
        basis = np.sqrt(2.0) * np.cos(2 * PI * (mx * x + my * y))
        coeff = (w * basis).mean(axis=(1, 2))
        assert abs(coeff.var() / std[mx, my] ** 2 - 1.0) < 0.1, ((mx, my), coeff.var() / std[mx, my] ** 2)


def test_generation_is_reproducible_batch_size_independent_and_strided() -> None:
    def run(n, batch_size, **kw):
        batches = list(generate_navier_stokes(n, 16, 4, times=[0.5, 1.0], time_step=0.05, batch_size=batch_size,
                                              progress=False, **kw))
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    a, w = run(4, 3)
    assert a.shape == (4, 16, 16) and w.shape == (4, 2, 16, 16)
    a1, w1 = run(4, 4)
    np.testing.assert_array_equal(a1, a)
    np.testing.assert_allclose(w1, w, rtol=0, atol=1e-12)
    a_fine, _ = run(2, 2, solve_resolution=32)
    np.testing.assert_array_equal(a_fine, np.stack([sample_grf_2d_periodic(32, np.random.default_rng(c))[::2, ::2]
                                                    for c in np.random.SeedSequence(4).spawn(2)]))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(times=[1.0, 1.0]), "times"),
        (dict(times=[-1.0]), "times"),
        (dict(times=[1.0], time_step=0.0), "time_step"),
        (dict(times=[1.0], solve_resolution=24), "solve_resolution"),
        (dict(times=[1.0], viscosity=-1e-3), "viscosity"),
    ],
)
def test_invalid_arguments_raise_eagerly(kwargs, name) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: expected"):
        generate_navier_stokes(2, 16, 0, **kwargs)


@pytest.fixture(scope="module")
def ns_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ns") / "ns16.h5"
    return generate_dataset("navier_stokes", path, resolution=16, n_train=8, n_test=4, seed=2, progress=False,
                            t_in=3, t_out=2, time_step=0.05)


def test_canonical_file_layout(ns_file) -> None:
    f = CanonicalFile(ns_file)
    assert f.problem == "navier_stokes" and f.grid == "periodic" and f.space_dims == ("x", "y") and f.grid_size == 16
    assert f.dims["train"]["a"] == ("sample", "t_in", "x", "y") and f.dims["test"]["u"] == ("sample", "t_out", "x", "y")
    assert f.attrs["viscosity"] == 1e-3 and f.attrs["time_step"] == 0.05 and f.attrs["t_in"] == 3
    assert "sin(2 pi (x + y))" in f.attrs["forcing"] and f.attrs["seed"] == 2
    with xr.open_dataset(ns_file, engine="h5netcdf", group="train") as ds:
        np.testing.assert_array_equal(ds["t_in"].values, [1.0, 2.0, 3.0])
        np.testing.assert_array_equal(ds["t_out"].values, [4.0, 5.0])
    a, u = OperatorDataset(f, "train", 8)[[0, 1, 2]]
    assert a.shape == (3, 3, 8, 8) and u.shape == (3, 2, 8, 8)
    (_, w), = generate_navier_stokes(12, 16, 2, times=[1, 2, 3, 4, 5], time_step=0.05, batch_size=12, progress=False)
    np.testing.assert_allclose(f.read("test", "u"), w[8:, 3:].astype(np.float32))


def test_tiny_training_run(ns_file, tmp_path) -> None:
    overrides = [
        "data.problem=navier_stokes", f"data.path={ns_file}", "data.generate=false", "data.train_resolution=8",
        "data.eval_resolutions=[8,16]", "model.n_modes=[3,3]", "model.hidden_channels=8", "model.n_layers=2",
        "train.batch_size=4", "train.epochs=2", "train.progress=false", f"out_dir={tmp_path}", "run_name=ns",
    ]
    assert train_main(overrides) == 0
    table = json.loads((tmp_path / "ns" / "eval.json").read_text())
    assert set(table) == {"8", "16"} and all(0 < v["rel_l2_mean"] < 10 for v in table.values())
