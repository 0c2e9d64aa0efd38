"""Darcy-flow data following the FNO protocol (Li et al., ICLR 2021).

Problem: -div(a grad u) = f on (0,1)^2, u = 0 on the boundary, f = 1, with the piecewise-constant
coefficient a = 12 where psi >= 0 and a = 3 where psi < 0, psi a Gaussian random field with
covariance tau^(2 alpha - 2) (-Laplacian + tau^2)^(-alpha), alpha = 2, tau = 3 (see `grf.py`).

Grid: s nodes per axis including both boundaries, x_i = i / (s - 1), h = 1 / (s - 1); arrays are
indexed [i, j] with i along x and j along y.  The paper solves at s = 421 and subsamples by
striding (421 -> 211 / 141 / 106 / 85); the nodal grid makes s = 129 -> 65 -> 33 nest the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from tqdm.auto import tqdm

from opspec.data.generate.grf import sample_grf_2d
from opspec.data.generate.validate import check_int

A_POSITIVE = 12.0
A_NEGATIVE = 3.0


def threshold_coefficient(psi: np.ndarray) -> np.ndarray:
    """Map a Gaussian field to the two-phase coefficient a = 12 where psi >= 0, else 3."""
    return np.where(psi >= 0.0, A_POSITIVE, A_NEGATIVE)


def _check_coefficient(a: np.ndarray) -> np.ndarray:
    """Validate a as an (s, s) array of positive values with s >= 3 and return it as float64."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ValueError(f"a: expected a square (s, s) array with s >= 3, got shape {a.shape}")
    if not np.all(a > 0.0):
        raise ValueError("a: expected strictly positive coefficient values (ellipticity)")
    return a


def darcy_matrix(a: np.ndarray) -> sp.csr_matrix:
    """Assemble the 5-point finite-difference matrix of -div(a grad u) on the interior nodes.

    For an interior node (i, j) of the s x s nodal grid (h = 1 / (s - 1)) the row reads

        [ a_{i+1/2,j} (u_ij - u_{i+1,j}) + a_{i-1/2,j} (u_ij - u_{i-1,j})
        + a_{i,j+1/2} (u_ij - u_{i,j+1}) + a_{i,j-1/2} (u_ij - u_{i,j-1}) ] / h^2,

    with face coefficients the arithmetic mean of the two adjacent nodal values,
    a_{i+1/2,j} = (a_ij + a_{i+1,j}) / 2.  Boundary values are zero (homogeneous Dirichlet), so
    their couplings are dropped.  Unknowns are u[1:-1, 1:-1] raveled in C order, p = (i-1) m + (j-1)
    with m = s - 2; the matrix is (m^2, m^2), symmetric positive definite and an M-matrix.
    """
    a = _check_coefficient(a)
    s = a.shape[0]
    m = s - 2
    inv_h2 = float(s - 1) ** 2
    a_x = 0.5 * (a[1:, :] + a[:-1, :])  # a_x[i, j] = a_{i+1/2, j}, shape (s-1, s)
    a_y = 0.5 * (a[:, 1:] + a[:, :-1])  # a_y[i, j] = a_{i, j+1/2}, shape (s, s-1)
    east = a_x[1:, 1:-1]  # a_{i+1/2, j} at interior nodes, shape (m, m)
    west = a_x[:-1, 1:-1]  # a_{i-1/2, j}
    north = a_y[1:-1, 1:]  # a_{i, j+1/2}
    south = a_y[1:-1, :-1]  # a_{i, j-1/2}
    diagonal = inv_h2 * (east + west + north + south)
    # Couplings across j (offset +-1) must not wrap from the end of one x-row to the next.
    north_inner = inv_h2 * north
    north_inner[:, -1] = 0.0
    south_inner = inv_h2 * south
    south_inner[:, 0] = 0.0
    return sp.diags(
        [
            diagonal.ravel(),
            -north_inner.ravel()[:-1],
            -south_inner.ravel()[1:],
            -inv_h2 * east[:-1, :].ravel(),
            -inv_h2 * west[1:, :].ravel(),
        ],
        [0, 1, -1, m, -m],
        shape=(m * m, m * m),
        format="csr",
    )


def solve_darcy(a: np.ndarray, f: float | np.ndarray = 1.0) -> np.ndarray:
    """Solve -div(a grad u) = f with u = 0 on the boundary by a sparse direct (SuperLU) solve.

    a and an array f are nodal (s, s) fields; only f's interior values enter.  Returns u as an
    (s, s) float64 array with zero boundary rows and columns.
    """
    a = _check_coefficient(a)
    s = a.shape[0]
    m = s - 2
    if np.ndim(f) == 0:
        rhs = np.full(m * m, float(f))
    else:
        f = np.asarray(f, dtype=np.float64)
        if f.shape != a.shape:
            raise ValueError(f"f: expected a scalar or an array of shape {a.shape}, got {f.shape}")
        rhs = f[1:-1, 1:-1].ravel()
    # Minimum-degree ordering on A^T + A suits this symmetric 5-point pattern better than COLAMD.
    lu = spla.splu(darcy_matrix(a).tocsc(), permc_spec="MMD_AT_PLUS_A")
    u = np.zeros((s, s), dtype=np.float64)
    u[1:-1, 1:-1] = lu.solve(rhs).reshape(m, m)
    return u


def generate_darcy(
    n: int,
    resolution: int,
    seed: int,
    *,
    alpha: float = 2.0,
    tau: float = 3.0,
    batch_size: int = 32,
    progress: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Return an iterator over batches (a, u), each (b, s, s) float64, in sample order.

    Seeding: sample k (0-based) draws its GRF from its own generator
    numpy.random.default_rng(SeedSequence(seed).spawn(n)[k]), i.e. from
    SeedSequence(seed, spawn_key=(k,)), and its field is synthesised on its own (not in a batched
    transform).  Sample k therefore depends only on (seed, k, resolution, alpha, tau), bit for bit:
    not on batch_size, and not on n either (the first m samples of a larger run equal a run with
    n = m).  Arguments are validated when called, before the first batch is requested.
    """
    check_int("n", n, 1, "number of samples")
    check_int("resolution", resolution, 3, "grid points per axis including both boundaries")
    check_int("seed", seed, 0, "seed for numpy.random.SeedSequence")
    check_int("batch_size", batch_size, 1, "samples per yielded batch")
    return _darcy_batches(int(n), int(resolution), int(seed), alpha, tau, int(batch_size), progress)


def _darcy_batches(
    n: int, s: int, seed: int, alpha: float, tau: float, batch_size: int, progress: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Produce the batches of `generate_darcy` lazily (split off so bad arguments raise eagerly)."""
    children = np.random.SeedSequence(seed).spawn(n)
    with tqdm(total=n, desc="darcy", unit="sample", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            a_batch = np.empty((stop - start, s, s), dtype=np.float64)
            u_batch = np.empty((stop - start, s, s), dtype=np.float64)
            for b, child in enumerate(children[start:stop]):
                psi = sample_grf_2d(1, s, np.random.default_rng(child), alpha=alpha, tau=tau)[0]
                a_batch[b] = threshold_coefficient(psi)
                u_batch[b] = solve_darcy(a_batch[b], 1.0)
                bar.update(1)
            yield a_batch, u_batch
