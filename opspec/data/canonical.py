"""The one on-disk layout opspec trains from (DESIGN §3.1): NetCDF-4-compatible HDF5.

Groups `train` and `test`, each with inputs `a` and outputs `u` of dimensions
(sample, [channel or time …], *space), 1-D coordinate variables for the spatial axes (`x`, `y`, `z`),
and root attributes naming the format, its version, the problem, the grid kind and the generator.
Variables are chunked one sample per chunk so a loader reads one sample without the whole file.
Lower resolutions are strided subsamples of the stored grid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5netcdf
import h5py
import numpy as np

from opspec.errors import OpspecError
from opspec.fileio import atomic_path

FORMAT_NAME = "opspec-canonical"
FORMAT_VERSION = 1
SPLITS = ("train", "test")
VARIABLES = ("a", "u")
SPACE_DIMS = ("x", "y", "z")
GRID_KINDS = ("nodal", "periodic")


def _attr_value(key: str, value: Any) -> Any:
    """Convert a Python attribute value to one NetCDF can store (no None, dict or bool)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return np.asarray(value)
    raise TypeError(f"attribute {key!r}: cannot store a {type(value).__name__} in a NetCDF attribute")


class CanonicalWriter:
    """Stream batches into a new canonical file, written atomically (temp file, then rename).

    Use as a context manager: declare each split with `add_split`, `append` batches in sample
    order, and the file appears at `path` only when every declared sample has been written.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        problem: str,
        coords: Mapping[str, np.ndarray],
        grid: str = "nodal",
        attrs: Mapping[str, Any] | None = None,
        dtype: str = "float32",
    ) -> None:
        if grid not in GRID_KINDS:
            raise ValueError(f"grid: expected one of {GRID_KINDS}, got {grid!r}")
        unknown = [name for name in coords if name not in SPACE_DIMS]
        if unknown:
            raise ValueError(f"coords: spatial axes must be named from {SPACE_DIMS}, got {unknown}")
        self.path = Path(path)
        self.coords = {name: np.asarray(values, dtype=np.float64) for name, values in coords.items()}
        self.dtype = np.dtype(dtype)
        self.root_attrs = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "problem": problem,
            "grid": grid,
            **dict(attrs or {}),
        }
        self._file: h5netcdf.File | None = None
        self._atomic = atomic_path(self.path)
        self._declared: dict[str, int] = {}
        self._written: dict[str, int] = {}

    def __enter__(self) -> "CanonicalWriter":
        self._file = h5netcdf.File(self._atomic.__enter__(), "w")
        for key, value in self.root_attrs.items():
            self._file.attrs[key] = _attr_value(key, value)
        return self

    def add_split(
        self,
        split: str,
        n: int,
        *,
        extra_dims: Mapping[str, int] | None = None,
        extra_coords: Mapping[str, np.ndarray] | None = None,
        a_dims: Sequence[str] | None = None,
        u_dims: Sequence[str] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Declare a split of n samples; `a` and `u` default to dimensions (sample, *space).

        `extra_dims` adds channel/time dimensions by size; `extra_coords` adds them with a 1-D
        coordinate variable of the same name (e.g. the snapshot times of a time axis).
        """
        assert self._file is not None, "use CanonicalWriter as a context manager"
        space = tuple(self.coords)
        extra = {name: np.asarray(values, dtype=np.float64) for name, values in (extra_coords or {}).items()}
        group = self._file.create_group(split)
        group.dimensions = {
            "sample": n,
            **dict(extra_dims or {}),
            **{k: len(v) for k, v in extra.items()},
            **{k: len(v) for k, v in self.coords.items()},
        }
        for name, values in {**extra, **self.coords}.items():
            group.create_variable(name, (name,), data=values)
        for name, dims in (("a", a_dims), ("u", u_dims)):
            dims = tuple(dims) if dims is not None else ("sample", *space)
            if dims[0] != "sample" or dims[-len(space):] != space:
                raise ValueError(f"{name}: dimensions must be (sample, ..., {', '.join(space)}), got {dims}")
            shape = tuple(group.dimensions[d].size for d in dims)
            group.create_variable(name, dims, dtype=self.dtype, chunks=(1, *shape[1:]))
        for key, value in {"split": split, **dict(attrs or {})}.items():
            group.attrs[key] = _attr_value(key, value)
        self._declared[split] = n
        self._written[split] = 0

    def append(self, split: str, a: np.ndarray, u: np.ndarray) -> None:
        """Write the next batch of samples of a split (sample axis first)."""
        assert self._file is not None, "use CanonicalWriter as a context manager"
        if len(a) != len(u):
            raise ValueError(f"append: a has {len(a)} samples but u has {len(u)}")
        start = self._written[split]
        stop = start + len(a)
        if stop > self._declared[split]:
            raise ValueError(f"append: split {split!r} declared {self._declared[split]} samples, got {stop}")
        group = self._file.groups[split]
        group.variables["a"][start:stop] = np.asarray(a, dtype=self.dtype)
        group.variables["u"][start:stop] = np.asarray(u, dtype=self.dtype)
        self._written[split] = stop

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None
        self._file.close()
        if exc_type is None:
            short = {s: (self._written[s], n) for s, n in self._declared.items() if self._written[s] != n}
            missing = [s for s in SPLITS if s not in self._declared]
            if short or missing:
                exc = ValueError(f"{self.path}: splits not fully written (written, declared): {short}, never declared: {missing}")
                self._atomic.__exit__(type(exc), exc, None)
                raise exc
        self._atomic.__exit__(exc_type, exc, tb)


def _from_attr(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (NetCDF stores scalars as 1-element arrays)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dims(dataset: h5py.Dataset) -> tuple[str, ...]:
    """Dimension names of a NetCDF-4 variable read through h5py's dimension scales."""
    names = []
    for dim in dataset.dims:
        scales = list(dim.values())
        names.append(scales[0].name.rsplit("/", 1)[-1] if scales else "")
    return tuple(names)


class CanonicalFile:
    """A validated, read-only view of a canonical file: shapes, grid, and strided reads.

    Opens the HDF5 file lazily per process, so a Dataset holding one works in DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise OpspecError(f"{self.path}: no such file (make one with `python -m opspec.data generate`)")
        if self.path.is_dir() or not h5py.is_hdf5(self.path):
            raise OpspecError(f"{self.path}: not an HDF5 file (expected an opspec canonical data file)")
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        f = self._handle()
        self.attrs = {k: _from_attr(v) for k, v in f.attrs.items()}
        if self.attrs.get("format") != FORMAT_NAME:
            raise OpspecError(f"{self.path}: not an opspec canonical file (root attribute format={FORMAT_NAME!r} missing)")
        version = int(self.attrs.get("format_version", -1))
        if not 1 <= version <= FORMAT_VERSION:
            raise OpspecError(f"{self.path}: format_version {version} is not supported (this opspec reads 1..{FORMAT_VERSION})")
        self.grid = str(self.attrs.get("grid", "nodal"))
        if self.grid not in GRID_KINDS:
            raise OpspecError(f"{self.path}: attribute grid={self.grid!r}, expected one of {GRID_KINDS}")
        self.problem = str(self.attrs.get("problem", ""))
        self.dims: dict[str, dict[str, tuple[str, ...]]] = {}
        self.shapes: dict[str, dict[str, tuple[int, ...]]] = {}
        for split in SPLITS:
            if split not in f or not isinstance(f[split], h5py.Group):
                raise OpspecError(f"{self.path}: no group {split!r} (expected groups 'train' and 'test')")
            self.dims[split], self.shapes[split] = {}, {}
            for var in VARIABLES:
                if var not in f[split]:
                    raise OpspecError(f"{self.path}: group {split!r} has no variable {var!r} (expected 'a' and 'u')")
                ds = f[split][var]
                dims = _dims(ds)
                if not dims or dims[0] != "sample":
                    raise OpspecError(f"{self.path}: {split}/{var} has dimensions {dims}, expected 'sample' first")
                self.dims[split][var] = dims
                self.shapes[split][var] = tuple(ds.shape)
            if self.shapes[split]["a"][0] != self.shapes[split]["u"][0]:
                raise OpspecError(
                    f"{self.path}: {split}/a has {self.shapes[split]['a'][0]} samples but {split}/u has {self.shapes[split]['u'][0]}"
                )
        self.space_dims = tuple(d for d in self.dims["train"]["u"] if d in SPACE_DIMS)
        if not self.space_dims:
            raise OpspecError(f"{self.path}: train/u has no spatial dimension among {SPACE_DIMS}")
        sizes = {self.shapes["train"]["u"][self.dims["train"]["u"].index(d)] for d in self.space_dims}
        for split in SPLITS:
            for var in VARIABLES:
                dims, shape = self.dims[split][var], self.shapes[split][var]
                if dims[-len(self.space_dims):] != self.space_dims:
                    raise OpspecError(f"{self.path}: {split}/{var} has dimensions {dims}, expected trailing {self.space_dims}")
                sizes |= set(shape[-len(self.space_dims):])
        if len(sizes) != 1:
            raise OpspecError(f"{self.path}: spatial axes have different sizes {sorted(sizes)}; expected a square grid")
        self.grid_size = sizes.pop()

    def _handle(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as err:
                raise OpspecError(f"{self.path}: cannot open as HDF5 ({err})") from None
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __enter__(self) -> "CanonicalFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_h5"], state["_pid"] = None, None
        return state

    def n_samples(self, split: str) -> int:
        return self.shapes[self._split(split)]["u"][0]

    def valid_resolutions(self) -> list[int]:
        """Every resolution that is a strided subsample of the stored grid, highest first."""
        s = self.grid_size
        out = []
        for stride in range(1, s):
            if self.grid == "nodal" and (s - 1) % stride == 0:
                out.append((s - 1) // stride + 1)
            elif self.grid == "periodic" and s % stride == 0:
                out.append(s // stride)
        return [r for r in out if r >= 2] if s > 1 else [s]

    def stride(self, resolution: int | None) -> int:
        """The stride that gives `resolution` points per axis; None means the stored grid."""
        if resolution is None or resolution == self.grid_size:
            return 1
        valid = self.valid_resolutions()
        if resolution not in valid:
            raise OpspecError(
                f"{self.path}: resolution {resolution} is not a strided subsample of the stored {self.grid} grid "
                f"of {self.grid_size} points; valid resolutions: {valid}"
            )
        s = self.grid_size
        return (s - 1) // (resolution - 1) if self.grid == "nodal" else s // resolution

    def coords(self, resolution: int | None = None) -> dict[str, np.ndarray]:
        stride = self.stride(resolution)
        f = self._handle()
        return {d: f["train"][d][::stride] if d in f["train"] else np.arange(self.grid_size)[::stride] for d in self.space_dims}

    def _split(self, split: str) -> str:
        if split not in SPLITS:
            raise OpspecError(f"split {split!r}: expected one of {SPLITS}")
        return split

    def _index(self, split: str, var: str, samples: slice | int, stride: int) -> tuple:
        dims = self.dims[split][var]
        return tuple(
            samples if d == "sample" else slice(None, None, stride) if d in self.space_dims else slice(None) for d in dims
        )

    def read(
        self,
        split: str,
        var: str,
        resolution: int | None = None,
        samples: slice | int = slice(None),
        check_finite: bool = True,
    ) -> np.ndarray:
        """Read `var` of a split at a strided resolution: (n, [channel…], *space) as float32."""
        split = self._split(split)
        if var not in VARIABLES:
            raise OpspecError(f"variable {var!r}: expected one of {VARIABLES}")
        stride = self.stride(resolution)
        data = self._handle()[split][var][self._index(split, var, samples, stride)]
        data = np.asarray(data, dtype=np.float32)
        if check_finite and not np.isfinite(data).all():
            bad = np.argwhere(~np.isfinite(data))[0]
            where = f"sample {bad[0] + (samples.start or 0) if isinstance(samples, slice) else samples}"
            raise OpspecError(f"{self.path}: {split}/{var} contains NaN or inf (first at {where}); the data file is corrupt")
        return data

    def describe(self) -> str:
        """An xarray summary of every group (variables, shapes, coordinates, attributes)."""
        import xarray as xr

        parts = [f"{self.path}", "root attributes:"]
        parts += [f"    {k}: {v}" for k, v in self.attrs.items()]
        for split in SPLITS:
            with xr.open_dataset(self.path, engine="h5netcdf", group=split) as ds:
                parts += [f"group {split!r}:", repr(ds)]
        parts.append(f"valid resolutions: {self.valid_resolutions()}")
        return "\n".join(parts)


def write_canonical(
    path: str | os.PathLike,
    splits: Mapping[str, Iterable[tuple[np.ndarray, np.ndarray]]],
    sizes: Mapping[str, int],
    **writer_kwargs: Any,
) -> Path:
    """Write a whole canonical file from per-split iterables of (a, u) batches."""
    with CanonicalWriter(path, **writer_kwargs) as writer:
        for split, n in sizes.items():
            writer.add_split(split, n)
        for split, batches in splits.items():
            for a, u in batches:
                writer.append(split, a, u)
    return Path(path)
