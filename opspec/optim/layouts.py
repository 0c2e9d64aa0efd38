"""A parameter as a batch of matrices (B, rows, cols), and back: the view the spectral maps act on.

- `matrix`:   a 2-D weight (out, in) is one matrix.
- `conv`:     a weight (out, in, k…) is one matrix (out, in·k…); neuraloperator's 1×1 "linear"
              layers (out, in, 1) are ordinary matrices this way.
- `per_mode`: a complex spectral weight (in, out, m1, m2, …) of an FNO SpectralConv is a batch of
              m1·m2·… complex (in × out) matrices, one per Fourier mode.
- `flatten`:  the same spectral weight as one (in × out·m1·m2·…) matrix, to compare against.
Vectors, scalars and matrices with a side shorter than `min_side` have no layout (AdamW takes them).

Orientation: a matrix's rows are the layer's output side for `matrix` and `conv` (weights are
(out, in, …)) and its input side for `per_mode` and `flatten` (spectral weights are (in, out, …));
`fans` gives (fan_out, fan_in) either way, which is what the learning-rate shape rule reads.
"""

from __future__ import annotations

import math

from einops import rearrange
from torch import Tensor

LAYOUTS = ("matrix", "conv", "per_mode", "flatten")
ROWS_ARE_INPUTS = frozenset({"per_mode", "flatten"})


def infer_layout(p: Tensor, min_side: int = 2) -> str | None:
    """The layout a parameter gets by rule, or None when it is not a matrix worth orthogonalizing."""
    if p.ndim < 2:
        return None
    if p.is_complex() and p.ndim >= 3:
        layout = "per_mode"
    elif p.ndim == 2:
        layout = "matrix"
    else:
        layout = "conv"
    _, rows, cols = matrix_shape(tuple(p.shape), layout)
    return layout if min(rows, cols) >= min_side else None


def resolve_layout(p: Tensor, layout: str = "auto") -> str:
    """The layout of a spectral parameter: `layout` itself, or by rule for "auto"; a ValueError when
    "auto" finds no matrix in `p` (a vector, a tiny matrix) or `layout` is unknown."""
    if layout == "auto":
        inferred = infer_layout(p)
        if inferred is None:
            raise ValueError(
                f"a parameter of shape {tuple(p.shape)} has no matrix layout; put it in a group with "
                "use_spectral=False (AdamW), or build the optimizer with opspec.optim.build_optimizer"
            )
        return inferred
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    return layout


def fans(rows: int, cols: int, layout: str) -> tuple[int, int]:
    """(fan_out, fan_in) of a (rows × cols) matrix under `layout`: rows are outputs unless the layout is a spectral one."""
    return (cols, rows) if layout in ROWS_ARE_INPUTS else (rows, cols)


def matrix_shape(shape: tuple[int, ...], layout: str) -> tuple[int, int, int]:
    """(batch, rows, cols) of a parameter shape under a layout."""
    if layout == "matrix":
        if len(shape) != 2:
            raise ValueError(f"layout 'matrix' needs a 2-D parameter, got shape {shape}")
        return 1, shape[0], shape[1]
    if len(shape) < 3:
        raise ValueError(f"layout {layout!r} needs a parameter with at least 3 dimensions, got shape {shape}")
    if layout == "conv":
        return 1, shape[0], math.prod(shape[1:])
    if layout == "per_mode":
        return math.prod(shape[2:]), shape[0], shape[1]
    if layout == "flatten":
        return 1, shape[0], math.prod(shape[1:])
    raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")


def to_matrices(t: Tensor, layout: str) -> Tensor:
    """The tensor as (B, rows, cols) matrices under `layout` (a view where the memory allows)."""
    b, rows, cols = matrix_shape(tuple(t.shape), layout)
    if layout == "per_mode":
        return rearrange(t, "i o ... -> (...) i o")
    return t.reshape(b, rows, cols)


def from_matrices(m: Tensor, layout: str, shape: tuple[int, ...]) -> Tensor:
    """Inverse of `to_matrices`: (B, rows, cols) back to the parameter's shape."""
    if layout == "per_mode":
        modes = shape[2:]
        names = " ".join(f"m{i}" for i in range(len(modes)))
        return rearrange(m, f"({names}) i o -> i o {names}", **{f"m{i}": s for i, s in enumerate(modes)})
    return m.reshape(shape)
