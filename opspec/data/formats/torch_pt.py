"""neuraloperator's published `.pt` files: a dict with `x` (N, [1,] s, s; bool at low resolution) and `y`.

Loaded with `weights_only=True` and, for zip-format files, `mmap=True`, so tensors stay on disk until a chunk
is sliced. The grid is neuraloperator's own: x_i = i/s on [0, 1) (periodic stride rule).
"""

from __future__ import annotations

import os

import numpy as np

from opspec.data.canonical import check_real_dtype
from opspec.data.formats.base import READ_ERRORS, ForeignFile, Layout, check_consistent
from opspec.core.errors import OpspecError
from opspec.core.grids import axis

SPACE = ("x", "y", "z")


def _load(path) -> dict:
    """torch.load the file memory-mapped where the format allows it; the dict it holds."""
    import pickle

    import torch

    errors = READ_ERRORS + (pickle.UnpicklingError,)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except errors:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except errors as err:
            raise OpspecError(f"{path}: cannot load as a torch file ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise OpspecError(f"{path}: expected a dict with 'x' and 'y', found a {type(data).__name__}")
    return data


class TorchPtFile(ForeignFile):
    """A neuraloperator `.pt` dataset file; a channel axis of size 1 on `x` or `y` is dropped."""

    format = "pt"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        import torch

        data = _load(self.path)
        missing = [k for k in ("x", "y") if k not in data]
        if missing:
            raise OpspecError(f"{self.path}: missing keys {missing} (neuraloperator .pt files hold 'x' and 'y'); found {sorted(map(str, data))}")
        x, y = data["x"], data["y"]
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise OpspecError(f"{self.path}: 'x' and 'y' must be tensors, got {type(x).__name__} and {type(y).__name__}")
        for key, t in (("'x'", x), ("'y'", y)):
            if t.is_complex():
                check_real_dtype(self.path, key, np.complex64)
        x = x[:, 0] if x.ndim >= 3 and x.shape[1] == 1 else x
        y = y[:, 0] if y.ndim >= 3 and y.shape[1] == 1 else y
        if x.ndim < 2 or y.ndim < x.ndim:
            raise OpspecError(f"{self.path}: inconsistent shapes: 'x' {tuple(x.shape)} and 'y' {tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise OpspecError(f"{self.path}: inconsistent shapes: 'x' has {x.shape[0]} samples but 'y' has {y.shape[0]}")
        self._x, self._y = x, y
        space = SPACE[: x.ndim - 1]
        extra = tuple("t" if i == 0 else f"u_dim{i}" for i in range(y.ndim - x.ndim))
        self.layout = Layout(
            "neuralop-pt", x.shape[0], space, tuple(x.shape[1:]), (*extra, *space), tuple(y.shape[1:]),
            {d: axis(n, "periodic") for d, n in zip(space, x.shape[1:])}, "periodic",
        )
        if x.dtype == torch.bool:
            self.layout.attrs["source_x_dtype"] = "bool"
        check_consistent(self.path, self.layout, "x", "y")

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x, y = self._x[start:stop], self._y[start:stop]
        return x.to(torch.float32).numpy(), y.to(torch.float32).numpy()
