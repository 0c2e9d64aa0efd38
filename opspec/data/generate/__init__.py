"""PDE data generators that write canonical files (so nothing needs the internet)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opspec.data.canonical import CanonicalWriter
from opspec.data.generate.validate import check_int
from opspec.data.outputs import check_space
from opspec.data.timesplit import TimeSplit
from opspec.core.grids import axis

PROBLEMS = ("darcy", "burgers", "navier_stokes")

# Problem-specific options of `generate_dataset` (None means the problem's default).
OPTIONS = {
    "darcy": (),
    "burgers": ("viscosity", "time", "time_step", "device"),
    "navier_stokes": ("viscosity", "time_step", "t_in", "t_out", "solve_resolution", "device"),
}
DEFAULT_BATCH_SIZE = {"darcy": 32, "burgers": 100, "navier_stokes": 20}


@dataclass
class _Plan:
    """What one problem writes: the spatial grid, root attributes, per-split extra axes, and (a, u) batches."""

    coords: dict[str, np.ndarray]
    grid: str
    attrs: dict[str, Any]
    batches: Iterator[tuple[np.ndarray, np.ndarray]]
    split_kwargs: dict[str, Any] = field(default_factory=dict)

    def sample_bytes(self) -> int:
        """float32 bytes of one stored sample (a and u): a lower bound for the file's size per sample."""
        points = int(np.prod([len(c) for c in self.coords.values()]))
        fields = [len(t) for t in self.split_kwargs.get("extra_coords", {}).values()] or [1, 1]
        return 4 * points * sum(fields)


def _darcy(resolution: int, n: int, seed: int, batch_size: int, progress: bool) -> _Plan:
    from opspec.data.generate.darcy import generate_darcy

    grid = axis(resolution, "nodal")
    attrs = {
        "equation": "-div(a grad u) = f on (0,1)^2, u = 0 on the boundary",
        "forcing": 1.0,
        "coefficient_values": [3.0, 12.0],
        "grf_alpha": 2.0,
        "grf_tau": 3.0,
        "discretization": "second-order 5-point finite differences, nodal grid",
        "generator": "opspec.data.generate.darcy",
    }
    batches = generate_darcy(n, resolution, seed, batch_size=batch_size, progress=progress)
    return _Plan({"x": grid, "y": grid}, "nodal", attrs, batches)


def _burgers(resolution: int, n: int, seed: int, batch_size: int, progress: bool, *, viscosity: float | None = None,
             time: float | None = None, time_step: float | None = None, device: str | None = None) -> _Plan:
    from opspec.data.generate import burgers

    viscosity = 0.1 if viscosity is None else viscosity
    time = 1.0 if time is None else time
    time_step = 1e-3 if time_step is None else time_step
    attrs = {
        "equation": "u_t + (u^2/2)_x = viscosity u_xx, x in [0,1) periodic; a = u(., 0), u = u(., time)",
        "viscosity": viscosity,
        "time": time,
        "forcing": 0.0,
        "grf_sigma": burgers.GRF_SIGMA,
        "grf_tau": burgers.GRF_TAU,
        "grf_gamma": burgers.GRF_GAMMA,
        "grf_covariance": "grf_sigma^2 (-Laplacian + grf_tau^2 I)^(-grf_gamma), mean mode 0",
        "time_step": time_step,
        "discretization": "Fourier pseudo-spectral, 2/3-rule dealiasing, ETDRK4 (Kassam-Trefethen contour)",
        "generator": "opspec.data.generate.burgers",
    }
    batches = burgers.generate_burgers(n, resolution, seed, viscosity=viscosity, time=time, time_step=time_step,
                                       batch_size=batch_size, device=device or "cpu", progress=progress)
    return _Plan({"x": axis(resolution, "periodic")}, "periodic", attrs, batches)


def _navier_stokes(resolution: int, n: int, seed: int, batch_size: int, progress: bool, *,
                   viscosity: float | None = None, time_step: float | None = None, t_in: int | None = None,
                   t_out: int | None = None, solve_resolution: int | None = None, device: str | None = None) -> _Plan:
    from opspec.data.generate import navier_stokes as ns

    viscosity = 1e-3 if viscosity is None else viscosity
    t_in = 10 if t_in is None else t_in
    t_out = 10 if t_out is None else t_out
    check_int("t_in", t_in, 1, "input snapshots at t = 1..t_in")
    check_int("t_out", t_out, 1, "output snapshots after t_in")
    solve_resolution = resolution if solve_resolution is None else solve_resolution
    time_step = ns.default_time_step(solve_resolution) if time_step is None else time_step
    times = np.arange(1, t_in + t_out + 1, dtype=np.float64)
    attrs = {
        "equation": "w_t + u.grad(w) = viscosity Lap(w) + f, u = (psi_y, -psi_x), -Lap(psi) = w, [0,1)^2 periodic",
        "viscosity": viscosity,
        "forcing": f"{ns.FORCING_AMPLITUDE} * (sin(2 pi (x + y)) + cos(2 pi (x + y)))",
        "grf_sigma": ns.GRF_SIGMA,
        "grf_tau": ns.GRF_TAU,
        "grf_alpha": ns.GRF_ALPHA,
        "grf_covariance": "grf_sigma^2 (-Laplacian + grf_tau^2 I)^(-grf_alpha), mean mode 0",
        "time_step": time_step,
        "solve_resolution": solve_resolution,
        "t_in": t_in,
        "t_out": t_out,
        "discretization": "Fourier pseudo-spectral, 2/3-rule dealiasing, Crank-Nicolson diffusion + Heun advection",
        "generator": "opspec.data.generate.navier_stokes",
    }
    batches = ns.generate_navier_stokes(n, resolution, seed, times=times, viscosity=viscosity, time_step=time_step,
                                        solve_resolution=solve_resolution, batch_size=batch_size,
                                        device=device or "cpu", progress=progress)
    split = TimeSplit(t_in, times)
    a_dims, u_dims = split.dims(("x", "y"))
    split_kwargs = {"extra_coords": split.coords, "a_dims": ("sample", *a_dims), "u_dims": ("sample", *u_dims)}
    x = axis(resolution, "periodic")
    return _Plan({"x": x, "y": x}, "periodic", attrs, (split(w) for _, w in batches), split_kwargs)


def generate_dataset(
    problem: str,
    out: str | os.PathLike,
    *,
    resolution: int,
    n_train: int,
    n_test: int,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Generate `n_train + n_test` samples of `problem` as one seeded stream and write the canonical file.

    The first n_train samples form `train` and the rest `test`, so the file is fixed by
    (problem, resolution, n_train, n_test, seed, options).  `options` are the problem's own
    (`OPTIONS[problem]`); None values mean the problem's defaults.
    """
    if problem not in PROBLEMS:
        raise ValueError(f"problem {problem!r}: expected one of {PROBLEMS}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be at least 1, got {n_train} and {n_test}")
    given = {k: v for k, v in options.items() if v is not None}
    foreign = sorted(set(given) - set(OPTIONS[problem]))
    if foreign:
        raise ValueError(f"{problem}: option(s) {foreign} do not apply; it takes {list(OPTIONS[problem]) or 'none'}")
    batch_size = DEFAULT_BATCH_SIZE[problem] if batch_size is None else batch_size
    make = {"darcy": _darcy, "burgers": _burgers, "navier_stokes": _navier_stokes}[problem]
    plan = make(resolution, n_train + n_test, seed, batch_size, progress, **given)
    check_space(out, (n_train + n_test) * plan.sample_bytes())
    attrs = {**plan.attrs, "seed": seed, "n_train": n_train, "n_test": n_test}
    with CanonicalWriter(out, problem=problem, coords=plan.coords, grid=plan.grid, attrs=attrs) as writer:
        writer.add_split("train", n_train, **plan.split_kwargs)
        writer.add_split("test", n_test, **plan.split_kwargs)
        written = 0
        for a, u in plan.batches:
            n_to_train = max(0, min(len(a), n_train - written))
            if n_to_train:
                writer.append("train", a[:n_to_train], u[:n_to_train])
            if n_to_train < len(a):
                writer.append("test", a[n_to_train:], u[n_to_train:])
            written += len(a)
    return Path(out)
