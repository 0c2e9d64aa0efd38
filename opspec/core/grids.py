"""Grid coordinates on the unit interval, the one definition every layer uses (data, readers, models).

Two grid kinds are stored (DESIGN §7.1): `nodal` grids include both ends, x_i = i/(s−1) (FNO Darcy);
`periodic` grids omit the right end, x_i = i/s (FNO Burgers / Navier–Stokes, neuraloperator).
PDEBench's cell-centred grids x_i = (i + 1/2)/s are kept as given and strided by the periodic rule.
This module imports only numpy, so `opspec.data` and `opspec.models` may both depend on it.
"""

from __future__ import annotations

import numpy as np

GRID_KINDS = ("nodal", "periodic")


def axis(s: int, grid: str) -> np.ndarray:
    """The s float64 coordinates of one axis of a `grid` kind ('nodal' or 'periodic') on [0, 1]."""
    if grid == "nodal":
        return np.linspace(0.0, 1.0, s)
    if grid == "periodic":
        return np.arange(s, dtype=np.float64) / s
    raise ValueError(f"grid: expected one of {GRID_KINDS}, got {grid!r}")


def cell_centres(s: int) -> np.ndarray:
    """x_i = (i + 1/2)/s: the cell centres of s equal cells on [0, 1] (PDEBench's grids)."""
    return (np.arange(s, dtype=np.float64) + 0.5) / s


def points(shape: tuple[int, ...], grid: str) -> np.ndarray:
    """(Q, d) coordinates of the tensor grid `shape` in row-major (C) order, one `axis` per dimension."""
    axes = [axis(s, grid) for s in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(shape))
