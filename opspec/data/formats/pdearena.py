"""PDEArena's 2-D Navier–Stokes shards: one HDF5 file, one group named after its split.

Layout (their data generator): group `train`, `valid` or `test` with `u` (the smoke density), `vx`,
`vy` shaped (trajectory, time, x, y), coordinates `x` (trajectory, x), `y`, `t` (trajectory, time),
and `buo_y` (trajectory,), the buoyancy. A sample is one trajectory with the three fields as
channels: a = the fields at the first step, u = the whole trajectory (time, field, x, y); `convert
--t-in K --t-out M` gives "the first K steps in, the next M out". The grid is cell-centred
(periodic stride rule S → S/k, as for PDEBench). The buoyancy is not an input: its values are
kept as attributes (`source_buo_y_min`, `source_buo_y_max`).
"""

from __future__ import annotations


import h5py
import numpy as np

from opspec.data.formats.base import HDF5File, Layout
from opspec.core.grids import cell_centres
from opspec.core.errors import OpspecError

PDEARENA_SPLITS = ("train", "valid", "test")
FIELDS = ("u", "vx", "vy")


def pdearena_group(h5: h5py.File) -> str | None:
    """The split group of a PDEArena Navier–Stokes shard, or None when the file is something else."""
    for name in PDEARENA_SPLITS:
        if name in h5 and isinstance(h5[name], h5py.Group) and all(f in h5[name] for f in FIELDS):
            return name
    return None


class PDEArenaFile(HDF5File):
    """One PDEArena Navier–Stokes 2-D shard: trajectories → samples, (u, vx, vy) → channels."""

    format = "pdearena"

    def _layout(self) -> Layout:
        h5, path = self._h5, self.path
        group = pdearena_group(h5)
        if group is None:
            raise OpspecError(
                f"{path}: missing keys: a PDEArena shard has a group train/valid/test holding {list(FIELDS)}; found {sorted(h5)}"
            )
        self.split = group
        g = h5[group]
        shapes = {f: tuple(g[f].shape) for f in FIELDS}
        first = shapes["u"]
        if len(first) != 4 or any(s != first for s in shapes.values()) or first[1] < 2:
            raise OpspecError(f"{path}: inconsistent shapes: expected u, vx, vy as (trajectory, time≥2, x, y), got {shapes}")
        n, t, nx, ny = first
        layout = Layout(
            "pdearena-ns2d", n, ("field", "x", "y"), (3, nx, ny), ("t", "field", "x", "y"), (t, 3, nx, ny),
            {"x": cell_centres(nx), "y": cell_centres(ny)}, "periodic",
        )
        if "t" in g and g["t"].ndim == 2 and g["t"].shape[1] == t:
            layout.extra_coords["t"] = np.asarray(g["t"][0], dtype=np.float64)
        layout.attrs.update({"fields": ", ".join(FIELDS), "source_split": group, "source_task": "trajectory"})
        if "buo_y" in g and g["buo_y"].shape[:1] == (n,):
            buoyancy = np.asarray(g["buo_y"][()], dtype=np.float64).ravel()
            layout.attrs.update({"source_buo_y_min": float(buoyancy.min()), "source_buo_y_max": float(buoyancy.max())})
        return layout

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        g = self._h5[self.split]
        u = np.stack([np.asarray(g[f][start:stop], dtype=np.float32) for f in FIELDS], axis=2)  # (k, T, 3, x, y)
        return u[:, 0], u
