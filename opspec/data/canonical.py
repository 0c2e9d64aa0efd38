"""The one on-disk layout opspec trains from (DESIGN §3.1): NetCDF-4-compatible HDF5.

Groups `train` and `test` (and optionally `valid`, a published validation split), each with inputs `a` and outputs `u` of dimensions
(sample, [channel or time …], *space), 1-D coordinate variables for the spatial axes (`x`, `y`, `z`),
and root attributes naming the format, its version, the problem, the grid kind and the generator.
Variables are chunked in blocks of whole samples of about CHUNK_BYTES (docs/data.md): one contiguous
read fetches a block, and an out-of-core loader shuffles blocks. Lower resolutions are strided
subsamples of the stored grid, taken in memory after a contiguous read; the grid may be non-square
and is strided per axis. A file may hold only the test split (a published test set on its own).
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import h5netcdf
import h5py
import numpy as np

from opspec.core.errors import OpspecError
from opspec.core.fileio import atomic_path
from opspec.core.grids import GRID_KINDS, axis

FORMAT_NAME = "opspec-canonical"
FORMAT_VERSION = 1
SPLITS = ("train", "test")  # the splits a file holds unless its attribute `splits` says otherwise
ALL_SPLITS = ("train", "valid", "test")  # with `valid`: a dataset's own validation split (The Well, PDEArena)
VARIABLES = ("a", "u")
SPACE_DIMS = ("x", "y", "z")
CHUNK_BYTES = 4 * 2**20  # target bytes of one chunk (a block of whole samples of one variable)
READ_BYTES = 32 * 2**20  # bytes of stored rows one read fetches before striding in memory
SLOW_CHUNK_BYTES = 256 * 2**10  # chunks smaller than this (or cutting a sample) make out-of-core reads slow

# A resolution: points per axis (int: every axis), one count per spatial axis, '/K' (every K-th
# point of each axis), or None (the stored grid).
Resolution = Union[int, Sequence[int], str, None]


def chunk_rows(sample_bytes: int, n: int) -> int:
    """Samples per chunk: about CHUNK_BYTES of the larger variable, at least 1 and at most n."""
    return max(1, min(max(n, 1), CHUNK_BYTES // max(1, sample_bytes)))


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
        splits: Sequence[str] = SPLITS,
    ) -> None:
        if grid not in GRID_KINDS:
            raise ValueError(f"grid: expected one of {GRID_KINDS}, got {grid!r}")
        unknown = [name for name in coords if name not in SPACE_DIMS]
        if unknown:
            raise ValueError(f"coords: spatial axes must be named from {SPACE_DIMS}, got {unknown}")
        if not splits or any(s not in ALL_SPLITS for s in splits):
            raise ValueError(f"splits: expected a non-empty subset of {ALL_SPLITS}, got {tuple(splits)}")
        self.path = Path(path)
        self.coords = {name: np.asarray(values, dtype=np.float64) for name, values in coords.items()}
        self.dtype = np.dtype(dtype)
        self.splits = tuple(s for s in ALL_SPLITS if s in splits)
        self.root_attrs = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "problem": problem,
            "grid": grid,
            **({"splits": " ".join(self.splits)} if self.splits != SPLITS else {}),
            **dict(attrs or {}),
        }
        self._file: h5netcdf.File | None = None
        self._tmp: Path | None = None
        self._atomic = atomic_path(self.path)
        self._declared: dict[str, int] = {}
        self._written: dict[str, int] = {}

    def __enter__(self) -> "CanonicalWriter":
        try:
            tmp = self._tmp = self._atomic.__enter__()
        except OSError as err:
            raise OpspecError(f"{self.path}: cannot write ({os_reason(err)})") from None
        self._watch()
        try:
            self._file = h5netcdf.File(tmp, "w")
            for key, value in self.root_attrs.items():
                self._file.attrs[key] = _attr_value(key, value)
        except BaseException as err:
            self._fail(err)
        return self

    # A full disk reaches HDF5 in its chunk cache: h5py reports most such failures only as "exception
    # ignored" when a handle is freed. The hook below records them (and keeps them off stderr), append()
    # stops at the first one, and the temp file is emptied before closing so the last flushes succeed.

    def _watch(self) -> None:
        self._failure: BaseException | None = None
        _install_write_failure_hook()
        _WRITERS[str(self._tmp)] = self

    def _unwatch(self, failed: bool) -> None:
        """Stop recording; after a failure, HDF5 handles freed later that still fail on this temp file stay silent."""
        _WRITERS.pop(str(self._tmp), None)
        if failed:
            _FAILED_TEMPS.add(str(self._tmp))

    def _fail(self, err: BaseException) -> None:
        """Remove the temp file and raise: write failures as one OpspecError naming the output, others as they are."""
        self._close_quietly(failed=True)
        self._unwatch(failed=True)
        self._atomic.__exit__(type(err), err, err.__traceback__)
        if is_write_failure(err):
            raise OpspecError(f"{self.path}: cannot write ({os_reason(err)})") from None
        raise err

    def _close_quietly(self, failed: bool) -> BaseException | None:
        """Close the HDF5 file; a failure to flush (a full disk) is returned, not raised.

        After a failure the temp file is emptied first: that gives a full disk its blocks back, so HDF5's
        last flushes succeed and leave no half-closed handles to fail again (and crash) at exit.
        """
        if self._file is None:
            return None
        if failed:
            self._empty_temp()
        try:
            self._file.close()
        except (OSError, RuntimeError) as err:
            self._empty_temp()
            try:
                self._file.close()
            except (OSError, RuntimeError, ValueError):
                pass
            self._file._closed = True  # h5netcdf's __del__ would try to flush again
            return err
        return None

    def _check_room(self, nbytes: int) -> None:
        """Stop with one line before a batch could fill the disk or pass the file-size limit, keeping
        WRITE_MARGIN free: HDF5 cannot close cleanly once a write fails inside its caches."""
        try:
            free = shutil.disk_usage(self._tmp.parent).free
            size = os.path.getsize(self._tmp)
        except OSError:
            return
        room = free
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            room = min(room, limit - size)
        if room < nbytes + WRITE_MARGIN:
            err = OSError(errno.ENOSPC, f"{max(room, 0) / 2**20:.1f} MiB of room left, "
                                        f"{(nbytes + WRITE_MARGIN) / 2**20:.1f} MiB needed to go on")
            self._failure = self._failure or err
            raise OpspecError(f"{self.path}: cannot write (no space left on device: {err.strerror})")

    def _empty_temp(self) -> None:
        try:
            os.truncate(self._tmp, 0)
        except OSError:
            pass

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
        if n < 1:
            raise ValueError(f"add_split: split {split!r} needs at least 1 sample, got {n}")
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
        if split not in self.splits:
            raise ValueError(f"add_split: split {split!r} is not one of this file's splits {self.splits}")
        shapes = {}
        for name, dims in (("a", a_dims), ("u", u_dims)):
            dims = tuple(dims) if dims is not None else ("sample", *space)
            if dims[0] != "sample" or dims[-len(space):] != space:
                raise ValueError(f"{name}: dimensions must be (sample, ..., {', '.join(space)}), got {dims}")
            shapes[name] = (dims, tuple(group.dimensions[d].size for d in dims))
        # one block length for a and u, so a block of samples is one chunk of each
        rows = chunk_rows(max(int(np.prod(shape[1:])) for _, shape in shapes.values()) * self.dtype.itemsize, n)
        for name, (dims, shape) in shapes.items():
            group.create_variable(name, dims, dtype=self.dtype, chunks=(rows, *shape[1:]))
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
        self._check_room((np.size(a) + np.size(u)) * self.dtype.itemsize)
        group = self._file.groups[split]
        try:
            group.variables["a"][start:stop] = np.asarray(a, dtype=self.dtype)
            group.variables["u"][start:stop] = np.asarray(u, dtype=self.dtype)
        except (OSError, RuntimeError) as err:
            if not is_write_failure(err):
                raise
            self._failure = self._failure or err
        if self._failure is not None:
            raise OpspecError(f"{self.path}: cannot write ({os_reason(self._failure)})")
        self._written[split] = stop

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None
        close_error = self._close_quietly(failed=exc_type is not None or self._failure is not None)
        failure = self._failure or close_error
        self._unwatch(failed=exc_type is not None or failure is not None)
        if exc_type is None and failure is not None:
            exc_type, exc, tb = type(failure), failure, failure.__traceback__
        if exc_type is None:
            short = {s: (self._written[s], n) for s, n in self._declared.items() if self._written[s] != n}
            missing = [s for s in self.splits if s not in self._declared]
            if short or missing:
                exc = ValueError(f"{self.path}: splits not fully written (written, declared): {short}, never declared: {missing}")
                self._atomic.__exit__(type(exc), exc, None)
                raise exc
            try:
                self._atomic.__exit__(None, None, None)  # fsync and rename; the temp file is removed if that fails
            except OSError as err:
                raise OpspecError(f"{self.path}: cannot write ({os_reason(err)})") from None
            return
        self._atomic.__exit__(exc_type, exc, tb)  # removes the temp file; the exception goes on
        if is_write_failure(exc):
            raise OpspecError(f"{self.path}: cannot write ({os_reason(exc)})") from None


WRITE_MARGIN = 8 * 2**20  # bytes kept free while writing, for HDF5's chunk and metadata caches to flush into

_WRITERS: dict[str, CanonicalWriter] = {}  # temp file -> the writer filling it
_FAILED_TEMPS: set[str] = set()  # temp files already given up (their handles may still fail when freed)
_HOOKED = False


def _install_write_failure_hook() -> None:
    """Route h5py's unraisable write failures on our temp files to their writer, once per process."""
    global _HOOKED
    if _HOOKED:
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        err = unraisable.exc_value
        if is_write_failure(err):
            text = str(err)
            for tmp, writer in list(_WRITERS.items()):
                if tmp in text:
                    if writer._failure is None:
                        writer._failure = err
                        writer._empty_temp()  # give a full disk its blocks back for HDF5's remaining flushes
                    return
            if any(tmp in text for tmp in _FAILED_TEMPS):
                return
        previous(unraisable)

    sys.unraisablehook = hook
    _HOOKED = True


WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO}


def is_write_failure(err: BaseException | None) -> bool:
    """True for the OS refusing a write (full disk, file-size limit, quota, read-only, I/O error), also when
    HDF5 reports it as a RuntimeError whose text holds 'file write failed'."""
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
        return True
    return isinstance(err, (OSError, RuntimeError)) and "write failed" in str(err)


def os_reason(err: BaseException) -> str:
    """Why a write failed, in one line: the errno's text (HDF5 buries it in a multi-line message)."""
    code = getattr(err, "errno", None)
    if code is None:
        found = re.search(r"errno = (\d+)", str(err))
        code = int(found.group(1)) if found else None
    if code:
        return os.strerror(code)
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_real_dtype(path: Path, name: str, dtype: np.dtype) -> None:
    """Refuse variables that are not real numbers: complex values would lose their imaginary part, strings
    and records have no numeric meaning. The message names the file and the variable."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c" or (dtype.names is not None and {"real", "imag"} <= set(dtype.names)):
        raise OpspecError(
            f"{path}: {name} holds complex numbers ({dtype}); opspec trains on real data "
            "(store the real and imaginary parts as two channels)"
        )
    if dtype.kind not in "fiub":
        raise OpspecError(f"{path}: {name} holds {dtype} values (strings or records); expected real numbers")


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


def axis_points(size: int, grid: str) -> list[int]:
    """Every number of points one stored axis of `size` points strides to, highest first."""
    if size <= 1:
        return [size]
    out = [size]
    for stride in range(2, size):
        if grid == "nodal" and (size - 1) % stride == 0:
            out.append((size - 1) // stride + 1)
        elif grid == "periodic" and size % stride == 0:
            out.append(size // stride)
    return [r for r in out if r >= 2]


def axis_stride(size: int, points: int, grid: str) -> int | None:
    """The stride that takes `size` stored points to `points`, or None when none does."""
    if points == size:
        return 1
    if points not in axis_points(size, grid):
        return None
    return (size - 1) // (points - 1) if grid == "nodal" else size // points


def parse_resolution(text: str) -> Resolution:
    """A resolution from the command line: '64' (every axis), '64x128' (per axis) or '/2' (a stride)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if re.fullmatch(r"\d+(x\d+)+", text):
        return [int(p) for p in text.split("x")]
    if re.fullmatch(r"/\s*[1-9]\d*", text):
        return text
    raise OpspecError(f"resolution {text!r}: expected a point count (64), one per axis (64x128), or '/K' (a stride)")


def stride_ok(size: int, k: int, grid: str) -> bool:
    """True when every k-th point of an axis of `size` points is a grid of the same kind (≥ 2 points)."""
    if k == 1:
        return True
    return (size - 1) % k == 0 and size > k if grid == "nodal" else size % k == 0 and size // k >= 2


def resolution_label(points: Sequence[int]) -> int | str:
    """How results name a grid: the point count when every axis has it (as before), else '64x128'."""
    return int(points[0]) if len(set(points)) == 1 else "x".join(str(int(p)) for p in points)


class CanonicalFile:
    """A validated, read-only view of a canonical file: shapes, grid, and strided reads.

    Opens the HDF5 file lazily per process, so a Dataset holding one works in DataLoader workers
    (each worker opens its own handle).
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
        version = self.attrs.get("format_version")
        if isinstance(version, str) and version.strip().isdigit():
            version = int(version)
        if isinstance(version, bool) or not isinstance(version, int):
            raise OpspecError(
                f"{self.path}: root attribute format_version={version!r} is not an integer "
                f"(this opspec reads 1..{FORMAT_VERSION})"
            )
        if not 1 <= version <= FORMAT_VERSION:
            raise OpspecError(f"{self.path}: format_version {version} is not supported (this opspec reads 1..{FORMAT_VERSION})")
        self.grid = str(self.attrs.get("grid", "nodal"))
        if self.grid not in GRID_KINDS:
            raise OpspecError(f"{self.path}: attribute grid={self.grid!r}, expected one of {GRID_KINDS}")
        self.problem = str(self.attrs.get("problem", ""))
        self.splits = tuple(str(self.attrs.get("splits", " ".join(SPLITS))).split())
        if not self.splits or any(s not in ALL_SPLITS for s in self.splits):
            raise OpspecError(f"{self.path}: attribute splits={self.attrs.get('splits')!r}, expected names from {ALL_SPLITS}")
        self.dims: dict[str, dict[str, tuple[str, ...]]] = {}
        self.shapes: dict[str, dict[str, tuple[int, ...]]] = {}
        for split in self.splits:
            if split not in f or not isinstance(f[split], h5py.Group):
                expected = "groups 'train' and 'test'" if self.splits == SPLITS else f"group {split!r}"
                raise OpspecError(f"{self.path}: no group {split!r} (expected {expected})")
            self.dims[split], self.shapes[split] = {}, {}
            for var in VARIABLES:
                if var not in f[split]:
                    raise OpspecError(f"{self.path}: group {split!r} has no variable {var!r} (expected 'a' and 'u')")
                ds = f[split][var]
                dims = _dims(ds)
                if not dims or dims[0] != "sample":
                    raise OpspecError(f"{self.path}: {split}/{var} has dimensions {dims}, expected 'sample' first")
                check_real_dtype(self.path, f"{split}/{var}", ds.dtype)
                self.dims[split][var] = dims
                self.shapes[split][var] = tuple(ds.shape)
            if self.shapes[split]["a"][0] != self.shapes[split]["u"][0]:
                raise OpspecError(
                    f"{self.path}: {split}/a has {self.shapes[split]['a'][0]} samples but {split}/u has {self.shapes[split]['u'][0]}"
                )
            if self.shapes[split]["a"][0] == 0:
                raise OpspecError(f"{self.path}: split {split!r} has 0 samples; expected at least 1")
        first = self.splits[0]
        self.space_dims = tuple(d for d in self.dims[first]["u"] if d in SPACE_DIMS)
        if not self.space_dims:
            raise OpspecError(f"{self.path}: {first}/u has no spatial dimension among {SPACE_DIMS}")
        n_space = len(self.space_dims)
        self.grid_shape: tuple[int, ...] = self.shapes[first]["u"][-n_space:]
        for split in self.splits:
            for var in VARIABLES:
                dims, shape = self.dims[split][var], self.shapes[split][var]
                if dims[-n_space:] != self.space_dims:
                    raise OpspecError(f"{self.path}: {split}/{var} has dimensions {dims}, expected trailing {self.space_dims}")
                if shape[-n_space:] != self.grid_shape:
                    raise OpspecError(
                        f"{self.path}: {split}/{var} has grid {shape[-n_space:]} but {first}/u has {self.grid_shape}; "
                        "expected one grid for every variable"
                    )

    @property
    def grid_size(self) -> int | None:
        """Points per axis of a square (or 1-D) stored grid; None for a non-square one (see grid_shape)."""
        return self.grid_shape[0] if len(set(self.grid_shape)) == 1 else None

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

    def valid_resolutions(self) -> list:
        """Every strided subsample of the stored grid, highest first: point counts for a square
        grid, per-axis tuples (one per stride valid on every axis) for a non-square one."""
        if self.grid_size is not None:
            return axis_points(self.grid_size, self.grid)
        return [self.points(f"/{k}") for k in range(1, max(self.grid_shape))
                if all(stride_ok(s, k, self.grid) for s in self.grid_shape)]

    def _resolution_error(self, resolution: Resolution) -> OpspecError:
        if self.grid_size is not None and isinstance(resolution, (int, np.integer)):
            return OpspecError(
                f"{self.path}: resolution {resolution} is not a strided subsample of the stored {self.grid} grid "
                f"of {self.grid_size} points; valid resolutions: {self.valid_resolutions()}"
            )
        per_axis = ", ".join(f"{d}: {axis_points(s, self.grid)}" for d, s in zip(self.space_dims, self.grid_shape))
        return OpspecError(
            f"{self.path}: resolution {resolution!r} is not a strided subsample of the stored {self.grid} grid "
            f"{'x'.join(map(str, self.grid_shape))}; valid points per axis: {per_axis}; or '/K' for every K-th point"
        )

    def strides(self, resolution: Resolution) -> tuple[int, ...]:
        """The stride of every spatial axis that gives `resolution` (see Resolution); None: all 1."""
        if resolution is None:
            return (1,) * len(self.grid_shape)
        if isinstance(resolution, str) and re.fullmatch(r"\d+(x\d+)+", resolution.strip()):
            resolution = [int(p) for p in resolution.strip().split("x")]  # a label such as '64x128'
        if isinstance(resolution, str):
            match = re.fullmatch(r"\s*/\s*(\d+)\s*", resolution)
            if not match or int(match.group(1)) < 1:
                raise OpspecError(f"resolution {resolution!r}: expected a point count, one per axis, or '/K' (a stride K ≥ 1)")
            k = int(match.group(1))
            if not all(stride_ok(s, k, self.grid) for s in self.grid_shape):
                raise self._resolution_error(resolution)
            return (k,) * len(self.grid_shape)
        if isinstance(resolution, (int, np.integer)):
            points = (int(resolution),) * len(self.grid_shape)
        else:
            try:
                points = tuple(int(p) for p in resolution)
            except (TypeError, ValueError):
                raise OpspecError(f"resolution {resolution!r}: expected a point count, one per axis, or '/K'") from None
            if len(points) != len(self.grid_shape):
                raise OpspecError(
                    f"{self.path}: resolution {list(points)} gives {len(points)} axes; the grid has "
                    f"{len(self.grid_shape)} ({', '.join(self.space_dims)})"
                )
        strides = tuple(axis_stride(s, p, self.grid) for s, p in zip(self.grid_shape, points))
        if any(k is None for k in strides):
            raise self._resolution_error(resolution)
        return strides  # type: ignore[return-value]

    def stride(self, resolution: Resolution) -> int | tuple[int, ...]:
        """The stride that gives `resolution`: one int when every axis has the same, else one per axis."""
        strides = self.strides(resolution)
        return strides[0] if len(set(strides)) == 1 else strides

    def points(self, resolution: Resolution) -> tuple[int, ...]:
        """Points per spatial axis at `resolution`."""
        return tuple(len(range(0, s, k)) for s, k in zip(self.grid_shape, self.strides(resolution)))

    def label(self, resolution: Resolution) -> int | str:
        """The name results use for `resolution`: its point count (square), else e.g. '64x128'."""
        return resolution_label(self.points(resolution))

    def coords(self, resolution: Resolution = None) -> dict[str, np.ndarray]:
        strides = self.strides(resolution)
        group = self._handle()[self.splits[0]]
        return {
            d: group[d][::k] if d in group else axis(s, self.grid)[::k]
            for d, s, k in zip(self.space_dims, self.grid_shape, strides)
        }

    def _split(self, split: str) -> str:
        if split not in ALL_SPLITS:
            raise OpspecError(f"split {split!r}: expected one of {ALL_SPLITS}")
        if split not in self.splits:
            raise OpspecError(
                f"{self.path}: a {'+'.join(self.splits)}-only file has no {split} split "
                f"(it holds one published {'+'.join(self.splits)} set; {split} needs a file with that split)"
            )
        return split

    def chunk_rows(self, split: str) -> int:
        """Samples per stored chunk (the block an out-of-core loader reads whole); for an unchunked
        variable, as many as this writer would put in one."""
        ds = self._handle()[self._split(split)]["u"]
        if ds.chunks is not None and ds.chunks[1:] == ds.shape[1:]:
            return int(ds.chunks[0])
        return chunk_rows(self.sample_bytes(split) // 2, self.n_samples(split))

    def blocks(self, split: str) -> list[tuple[int, int]]:
        """Sample ranges [start, stop) of the stored chunks, in order: what one contiguous read fetches."""
        n, k = self.n_samples(split), self.chunk_rows(split)
        return [(lo, min(lo + k, n)) for lo in range(0, n, k)]

    def sample_bytes(self, split: str) -> int:
        """Stored bytes of one sample of `a` plus `u` (the stored grid, float32)."""
        return sum(4 * int(np.prod(self.shapes[self._split(split)][v][1:])) for v in VARIABLES)

    def chunking_warning(self, split: str) -> str | None:
        """Why this file's chunks make out-of-core reads slow, and the fix; None when they do not."""
        ds = self._handle()[self._split(split)]["u"]
        if ds.chunks is None:
            return None
        chunk = int(np.prod(ds.chunks)) * ds.dtype.itemsize
        if ds.chunks[1:] == ds.shape[1:] and (chunk >= SLOW_CHUNK_BYTES or ds.chunks[0] >= ds.shape[0]):
            return None
        why = "cut every sample into several chunks" if ds.chunks[1:] != ds.shape[1:] else f"hold {ds.chunks[0]} sample(s), {chunk // 1024} KiB"
        return (
            f"{self.path}: the chunks of {split}/u {why}, so out-of-core reads are slow; rewrite the file with "
            f"`python -m opspec.data rechunk {self.path} --out NEW.h5` (blocks of about {CHUNK_BYTES // 2**20} MiB)"
        )

    def read(
        self,
        split: str,
        var: str,
        resolution: Resolution = None,
        samples: slice | int = slice(None),
        check_finite: bool = True,
    ) -> np.ndarray:
        """Read `var` of a split at a strided resolution: (n, [channel…], *space) as float32.

        Stored rows are read contiguously, READ_BYTES at a time, and strided in memory (an HDF5
        strided selection is many small reads); memory is the output plus one such block.
        """
        split = self._split(split)
        if var not in VARIABLES:
            raise OpspecError(f"variable {var!r}: expected one of {VARIABLES}")
        strides = self.strides(resolution)
        ds = self._handle()[split][var]
        n = ds.shape[0]
        single = isinstance(samples, (int, np.integer))
        if single:
            index = int(samples) + (n if samples < 0 else 0)
            if not 0 <= index < n:
                raise IndexError(f"sample {samples} out of range for {n} samples")
            start, stop = index, index + 1
        else:
            start, stop, step = samples.indices(n)
            if step != 1:
                raise ValueError("read: samples must be a contiguous slice")
            stop = max(start, stop)
        lead = (slice(None),) * (ds.ndim - 1 - len(strides))
        space = tuple(slice(None, None, k) for k in strides)
        out_shape = (stop - start, *ds.shape[1 : ds.ndim - len(strides)], *self.points(resolution))
        out = np.empty(out_shape, dtype=np.float32)
        row_bytes = max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize)
        rows = max(1, READ_BYTES // row_bytes)
        direct = all(k == 1 for k in strides) and ds.dtype == np.float32
        for lo in range(start, stop, rows):
            hi = min(lo + rows, stop)
            if direct:
                ds.read_direct(out, np.s_[lo:hi], np.s_[lo - start : hi - start])
            else:
                out[lo - start : hi - start] = ds[lo:hi][(slice(None), *lead, *space)]
            if check_finite:
                finite = np.isfinite(out[lo - start : hi - start]).reshape(hi - lo, -1).all(axis=1)
                if not finite.all():
                    raise OpspecError(
                        f"{self.path}: {split}/{var} contains NaN or inf (first at sample {lo + int(np.argmin(finite))}); "
                        "the data file is corrupt"
                    )
        return out[0] if single else out

    def describe(self) -> str:
        """A summary of every group (dimensions, variables, coordinates, attributes), read from the same
        validated view that training reads, so every file `train` accepts can be described."""
        f = self._handle()
        parts = [f"{self.path}", "root attributes:"]
        parts += [f"    {k}: {v}" for k, v in self.attrs.items()]
        for split in self.splits:
            group = f[split]
            sizes: dict[str, int] = {}
            for var in VARIABLES:
                sizes.update(zip(self.dims[split][var], self.shapes[split][var]))
            parts.append(f"group {split!r}:")
            parts.append("    dimensions: (" + ", ".join(f"{d}: {n}" for d, n in sizes.items()) + ")")
            for var in VARIABLES:
                ds = group[var]
                parts.append(f"    {var}  ({', '.join(self.dims[split][var])})  {ds.dtype}  chunks {ds.chunks}")
            for d in (*[d for d in sizes if d not in self.space_dims and d != "sample"], *self.space_dims):
                if d in group and isinstance(group[d], h5py.Dataset) and group[d].ndim == 1 and group[d].dtype.kind in "fiu":
                    values = np.asarray(group[d][()], dtype=np.float64)
                    span = f"{values[0]:.6g} .. {values[-1]:.6g}" if values.size else "empty"
                    parts.append(f"    coordinate {d}: {values.size} values, {span}")
            parts += [f"    attribute {k}: {_from_attr(v)}" for k, v in group.attrs.items()]
        parts.append(f"valid resolutions: {self.valid_resolutions()}")
        for split in self.splits:
            warning = self.chunking_warning(split)
            if warning:
                parts.append(f"warning: {warning}")
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
