"""The FNO paper's `.mat` files: MATLAB v5 through scipy, v7.3 (HDF5) through h5py with MATLAB's axes reversed.

Layouts (DESIGN §3.2), sample axis first after loading:
  Darcy   `coeff`, `sol`  (N, s, s)          nodal grid on [0, 1]
  Burgers `a`, `u`        (N, s)             periodic grid
  NS      `a` (N, s, s), `u` (N, s, s, T)    periodic grid; u is stored as (N, T, s, s), time before space
"""

from __future__ import annotations

import os
from typing import Mapping

import h5py
import numpy as np

from opspec.data.canonical import check_real_dtype
from opspec.data.formats.base import READ_ERRORS, ForeignFile, Layout, check_consistent
from opspec.core.errors import OpspecError
from opspec.core.grids import axis


def mat_layout(path, shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, str, Layout]:
    """(input key, output key, Layout) from sample-first variable shapes; OpspecError if no layout fits."""
    if "coeff" in shapes and "sol" in shapes:
        a, u, name = "coeff", "sol", "fno-darcy"
    elif "a" in shapes and "u" in shapes:
        a, u = "a", "u"
        name = {(2, 2): "fno-burgers", (3, 4): "fno-navier-stokes"}.get((len(shapes[a]), len(shapes[u])), "")
        if not name:
            raise OpspecError(
                f"{path}: inconsistent shapes: 'a' {shapes[a]} and 'u' {shapes[u]} fit neither Burgers "
                "((N, s) and (N, s)) nor Navier–Stokes ((N, s, s) and (N, s, s, T))"
            )
    else:
        raise OpspecError(
            f"{path}: missing keys: expected 'coeff' and 'sol' (Darcy) or 'a' and 'u' (Burgers, Navier–Stokes), "
            f"found {sorted(shapes)}"
        )
    sa, su = tuple(shapes[a]), tuple(shapes[u])
    if sa[0] != su[0]:
        raise OpspecError(f"{path}: inconsistent shapes: {a!r} has {sa[0]} samples but {u!r} has {su[0]} ({sa} vs {su})")
    if name == "fno-darcy":
        space = ("x", "y")[: len(sa) - 1]
        coords = {d: axis(n, "nodal") for d, n in zip(space, sa[1:])}
        layout = Layout(name, sa[0], space, sa[1:], space, su[1:], coords, "nodal", problem="darcy")
    elif name == "fno-burgers":
        layout = Layout(name, sa[0], ("x",), sa[1:], ("x",), su[1:], {"x": axis(sa[1], "periodic")}, "periodic",
                        problem="burgers")
    else:
        space = ("x", "y")
        t = su[-1]
        coords = {d: axis(n, "periodic") for d, n in zip(space, sa[1:])}
        layout = Layout(name, sa[0], space, sa[1:], ("t", *space), (t, *su[1:-1]), coords, "periodic",
                        problem="navier_stokes")
    check_consistent(path, layout, a, u)
    return a, u, layout


def _time_coordinate(values: np.ndarray | None, t: int) -> np.ndarray:
    """The file's `t` if it has one value per stored step, else the step numbers 1..T."""
    if values is not None and np.asarray(values).size == t:
        return np.asarray(values, dtype=np.float64).ravel()
    return np.arange(1, t + 1, dtype=np.float64)


class MatV5File(ForeignFile):
    """A MATLAB v5 file. scipy.io reads a v5 variable whole, so the two arrays are held in memory
    (file-sized); streaming happens on the output side, chunk by chunk into the canonical file."""

    format = "mat5"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        import scipy.io

        try:
            info = {name: tuple(shape) for name, shape, _ in scipy.io.whosmat(self.path)}
        except READ_ERRORS + (NotImplementedError,) as err:
            raise OpspecError(f"{self.path}: not a readable MATLAB v5 file ({type(err).__name__}: {err})") from None
        self.a_key, self.u_key, self.layout = mat_layout(self.path, info)
        names = [self.a_key, self.u_key] + (["t"] if "t" in info else [])
        try:
            data = scipy.io.loadmat(self.path, variable_names=names)
        except READ_ERRORS + (NotImplementedError,) as err:
            raise OpspecError(f"{self.path}: cannot load {names} from the MATLAB v5 file ({type(err).__name__}: {err})") from None
        self._a, self._u = data[self.a_key], data[self.u_key]
        check_real_dtype(self.path, repr(self.a_key), self._a.dtype)
        check_real_dtype(self.path, repr(self.u_key), self._u.dtype)
        if self.layout.name == "fno-navier-stokes":
            self.layout.extra_coords["t"] = _time_coordinate(data.get("t"), self.layout.u_shape[0])

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        u = self._u[start:stop]
        if self.layout.name == "fno-navier-stokes":
            u = np.moveaxis(u, -1, 1)
        return self._a[start:stop], u


class MatV73File(ForeignFile):
    """A MATLAB v7.3 file (HDF5): h5py sees MATLAB's column-major arrays with all axes reversed,
    e.g. NS u as (T, s, s, N); samples are read as slabs of the last axis and transposed back."""

    format = "mat73"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise OpspecError(f"{self.path}: cannot open as a MATLAB v7.3 (HDF5) file ({err})") from None
        try:
            shapes = {k: tuple(reversed(v.shape)) for k, v in self._h5.items() if isinstance(v, h5py.Dataset)}
            self.a_key, self.u_key, self.layout = mat_layout(self.path, shapes)
            for key in (self.a_key, self.u_key):
                check_real_dtype(self.path, repr(key), self._h5[key].dtype)
            if self.layout.name == "fno-navier-stokes":
                t = self._h5["t"][()] if "t" in shapes else None
                self.layout.extra_coords["t"] = _time_coordinate(t, self.layout.u_shape[0])
        except BaseException:
            self._h5.close()
            raise

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for key in (self.a_key, self.u_key):
            ds = self._h5[key]
            block = ds[..., start:stop]
            out.append(np.transpose(block, tuple(reversed(range(block.ndim)))))
        a, u = out
        if self.layout.name == "fno-navier-stokes":
            u = np.moveaxis(u, -1, 1)
        return a, u

    def close(self) -> None:
        self._h5.close()
