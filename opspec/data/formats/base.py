"""What every foreign-file reader gives the converter: a layout (shapes, dims, grid) and sample ranges."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from opspec.data.canonical import check_real_dtype
from opspec.core.errors import OpspecError

READ_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, IndexError)


@dataclass
class Layout:
    """Per-sample shapes and dimension names of `a` and `u` (sample axis excluded), grid and provenance."""

    name: str
    n: int
    a_dims: tuple[str, ...]
    a_shape: tuple[int, ...]
    u_dims: tuple[str, ...]
    u_shape: tuple[int, ...]
    coords: dict[str, np.ndarray]
    grid: str
    extra_coords: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # the problem this layout always holds (None: the file does not say)

    def extra_dims(self) -> dict[str, int]:
        """Sizes of the non-spatial dimensions (time, channel) that `a` and `u` use."""
        sizes: dict[str, int] = {}
        for dims, shape in ((self.a_dims, self.a_shape), (self.u_dims, self.u_shape)):
            for d, s in zip(dims, shape):
                if d not in self.coords:
                    sizes[d] = s
        return sizes

    def sample_bytes(self) -> int:
        """float32 bytes of one sample of `a` plus `u`: what one chunk row costs on the output side."""
        return 4 * (int(np.prod(self.a_shape)) + int(np.prod(self.u_shape)))

    def same_grid_as(self, other: "Layout") -> bool:
        """True when two files can be the two splits of one canonical file."""
        return (
            (self.a_dims, self.a_shape, self.u_dims, self.u_shape, self.grid)
            == (other.a_dims, other.a_shape, other.u_dims, other.u_shape, other.grid)
            and self.coords.keys() == other.coords.keys()
            and all(np.allclose(self.coords[k], other.coords[k]) for k in self.coords)
        )


def check_consistent(path: Path, layout: Layout, a_name: str, u_name: str) -> None:
    """Refuse layouts whose inputs and outputs disagree on the grid, so the error names the file."""
    space = tuple(layout.coords)
    a_space = layout.a_shape[-len(space):]
    u_space = layout.u_shape[-len(space):]
    grid = tuple(len(layout.coords[d]) for d in space)
    if layout.a_dims[-len(space):] != space or layout.u_dims[-len(space):] != space:
        raise OpspecError(f"{path}: internal layout error: spatial dims of {a_name}/{u_name} are not {space}")
    if a_space != u_space or a_space != grid:
        raise OpspecError(
            f"{path}: inconsistent shapes: input {a_name!r} has grid {a_space}, output {u_name!r} has {u_space}, "
            f"coordinates give {grid}"
        )
    if layout.n < 1:
        raise OpspecError(f"{path}: no samples (input {a_name!r} has 0 along the sample axis)")


class ForeignFile:
    """A foreign data file opened for streaming: `layout`, `read(start, stop)` and `chunks(...)`.

    Subclasses implement `_read`; errors from the underlying library become OpspecError naming the file.
    """

    format: str = ""
    layout: Layout

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples [start, stop) of `a` and `u` as float32, shaped (k, *a_shape) and (k, *u_shape)."""
        try:
            a, u = self._read(start, stop)
        except OpspecError:
            raise
        except READ_ERRORS as err:
            raise OpspecError(f"{self.path}: cannot read samples {start}..{stop} ({type(err).__name__}: {err})") from None
        check_real_dtype(self.path, "the input", np.asarray(a).dtype)
        check_real_dtype(self.path, "the output", np.asarray(u).dtype)
        k = stop - start
        if a.shape != (k, *self.layout.a_shape) or u.shape != (k, *self.layout.u_shape):
            raise OpspecError(
                f"{self.path}: samples {start}..{stop} came back as a{a.shape}, u{u.shape}; "
                f"expected a{(k, *self.layout.a_shape)}, u{(k, *self.layout.u_shape)}"
            )
        return np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(u, dtype=np.float32)

    def chunks(self, samples: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (first sample index, a, u) for consecutive chunks of at most `samples` samples."""
        stop = self.layout.n if stop is None else stop
        for lo in range(start, stop, max(1, samples)):
            hi = min(lo + max(1, samples), stop)
            a, u = self.read(lo, hi)
            yield lo, a, u

    def close(self) -> None:
        """Release the file handle (a no-op for readers that hold arrays)."""

    def __enter__(self) -> "ForeignFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HDF5File(ForeignFile):
    """A reader over one open HDF5 file: opens it, builds `self.layout` by the subclass's `_layout`,
    and closes the file again if that fails (PDEBench, The Well, PDEArena)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise OpspecError(f"{self.path}: cannot open as HDF5 (truncated or not HDF5? {err})") from None
        try:
            self.layout = self._layout()
        except BaseException:
            self._h5.close()
            raise

    def _layout(self) -> Layout:
        raise NotImplementedError

    def close(self) -> None:
        self._h5.close()

