"""PDEBench HDF5 files, read sample-chunk by sample-chunk through h5py.

Layouts (sample axis first in the file):
  1D Burgers  `tensor` (N, T, X), `x-coordinate` (X,), `t-coordinate` (T+1,) → a = u(t0) (N, X), u = u(t1..) (N, T-1, X)
  2D Darcy    `nu` (N, S, S) input, `tensor` (N, 1, S, S) output, `x-coordinate`, `y-coordinate`, attr `beta`
  2D incompressible Navier–Stokes (pdebench/data_gen/src/data_io.py `dims_for` and sim_ns_incomp_2d.py in
  github.com/pdebench/PDEBench): `velocity` (N, T, X, Y, 2), `particles` (N, T, X, Y, 1), `force` (N, X, Y, 2),
  `t` (N, T); no coordinate arrays (cell-centred grid) → a = [vx, vy, particles](t0) + [fx, fy] as 5 channels
  (N, 5, X, Y), u = [vx, vy, particles](t1..) (N, T-1, 3, X, Y).
All three are cell-centred grids, so they are stored with the periodic stride rule (S → S/k).
"""

from __future__ import annotations


import h5py
import numpy as np

from opspec.data.canonical import check_real_dtype
from opspec.data.formats.base import HDF5File, Layout, check_consistent
from opspec.core.errors import OpspecError
from opspec.core.grids import cell_centres


def _coordinate(path, h5: h5py.File, key: str, size: int) -> np.ndarray:
    """A PDEBench coordinate array, checked against the grid it labels."""
    if key not in h5:
        return cell_centres(size)
    values = np.asarray(h5[key][()], dtype=np.float64).ravel()
    if values.size != size:
        raise OpspecError(f"{path}: inconsistent shapes: {key!r} has {values.size} points but the data grid has {size}")
    return values


def _scalar_attrs(attrs: h5py.AttributeManager) -> dict:
    """The file's scalar numeric attributes (e.g. Darcy's `beta`), to carry into the canonical file."""
    out = {}
    for key, value in attrs.items():
        value = np.asarray(value)
        if value.size == 1 and value.dtype.kind in "iuf":
            out[f"source_{key}"] = value.item()
    return out


class PDEBenchFile(HDF5File):
    """One PDEBench HDF5 file (Burgers 1D, Darcy 2D or incompressible Navier–Stokes 2D), chosen by its keys."""

    format = "pdebench"

    def _shape(self, key: str) -> tuple[int, ...]:
        node = self._h5[key]
        if not isinstance(node, h5py.Dataset):
            raise OpspecError(f"{self.path}: {key!r} is a group, expected an array")
        check_real_dtype(self.path, repr(key), node.dtype)
        return tuple(node.shape)

    def _layout(self) -> Layout:
        h5, path = self._h5, self.path
        keys = set(h5.keys())
        if {"nu", "tensor"} <= keys:
            a, u = self._shape("nu"), self._shape("tensor")
            if len(a) != 3 or len(u) != 4 or u[1] != 1:
                raise OpspecError(f"{path}: inconsistent shapes: Darcy expects 'nu' (N, S, S) and 'tensor' (N, 1, S, S), got {a} and {u}")
            if a[0] != u[0]:
                raise OpspecError(f"{path}: inconsistent shapes: 'nu' has {a[0]} samples but 'tensor' has {u[0]}")
            coords = {"x": _coordinate(path, h5, "x-coordinate", a[1]), "y": _coordinate(path, h5, "y-coordinate", a[2])}
            layout = Layout("pdebench-darcy", a[0], ("x", "y"), a[1:], ("x", "y"), u[2:], coords, "periodic",
                            problem="darcy")
            layout.attrs.update(_scalar_attrs(h5.attrs))
            check_consistent(path, layout, "nu", "tensor")
            self._kind, self._a_name, self._u_name = "darcy", "nu", "tensor"
            return layout
        if "velocity" in keys:
            missing = sorted({"particles", "force"} - keys)
            if missing:
                raise OpspecError(f"{path}: missing keys {missing} (PDEBench Navier–Stokes needs 'velocity', 'particles', 'force')")
            v, p, f = self._shape("velocity"), self._shape("particles"), self._shape("force")
            if len(v) != 5 or v[-1] != 2 or p != (*v[:-1], 1) or f != (v[0], *v[2:4], 2) or v[1] < 2:
                raise OpspecError(
                    f"{path}: inconsistent shapes: expected velocity (N, T≥2, X, Y, 2), particles (N, T, X, Y, 1), "
                    f"force (N, X, Y, 2); got {v}, {p}, {f}"
                )
            n, t, x, y = v[:4]
            coords = {"x": cell_centres(x), "y": cell_centres(y)}
            layout = Layout(
                "pdebench-ns-incompressible", n, ("a_channel", "x", "y"), (5, x, y), ("t", "channel", "x", "y"),
                (t - 1, 3, x, y), coords, "periodic", problem="navier_stokes",
            )
            if "t" in keys and self._shape("t")[-1] == t:
                layout.extra_coords["t"] = np.asarray(h5["t"][0, 1:], dtype=np.float64)
            layout.attrs["a_channels"] = "vx(t0), vy(t0), particles(t0), force_x, force_y"
            layout.attrs["u_channels"] = "vx, vy, particles"
            check_consistent(path, layout, "velocity", "velocity")
            self._kind, self._a_name, self._u_name = "ns", "velocity", "velocity"
            return layout
        if "tensor" in keys:
            u = self._shape("tensor")
            if len(u) != 3 or u[1] < 2:
                raise OpspecError(f"{path}: inconsistent shapes: 1D Burgers expects 'tensor' (N, T≥2, X), got {u}")
            n, t, x = u
            coords = {"x": _coordinate(path, h5, "x-coordinate", x)}
            layout = Layout("pdebench-burgers-1d", n, ("x",), (x,), ("t", "x"), (t - 1, x), coords, "periodic",
                            problem="burgers")
            if "t-coordinate" in keys:
                # PDEBench stores one more time value than time steps (202 for 201); the first T label the steps.
                tc = np.asarray(h5["t-coordinate"][()], dtype=np.float64).ravel()
                if tc.size < t:
                    raise OpspecError(f"{path}: inconsistent shapes: 't-coordinate' has {tc.size} values for {t} time steps")
                layout.extra_coords["t"] = tc[1:t]
            layout.attrs.update(_scalar_attrs(h5.attrs))
            check_consistent(path, layout, "tensor", "tensor")
            self._kind, self._a_name, self._u_name = "burgers", "tensor", "tensor"
            return layout
        raise OpspecError(
            f"{path}: missing keys: expected PDEBench 'tensor' (1D Burgers), 'nu' + 'tensor' (2D Darcy) or "
            f"'velocity' + 'particles' + 'force' (2D incompressible NS); found {sorted(keys)}"
        )

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        h5 = self._h5
        if self._kind == "darcy":
            return h5["nu"][start:stop], h5["tensor"][start:stop, 0]
        if self._kind == "burgers":
            block = h5["tensor"][start:stop]
            return block[:, 0], block[:, 1:]
        v = h5["velocity"][start:stop]
        p = h5["particles"][start:stop]
        f = h5["force"][start:stop]
        state = np.concatenate([v, p], axis=-1)
        a = np.concatenate([state[:, 0], f], axis=-1)
        return np.moveaxis(a, -1, 1), np.moveaxis(state[:, 1:], -1, 2)
