"""The periodic Fourier grid shared by the periodic GRFs and the two spectral solvers (Burgers, Navier–Stokes).

Fields live on x_i = i/s per axis (`opspec.core.grids.axis(s, "periodic")`) and are transformed with numpy/torch's
`rfftn` over their last `dim` axes; the last axis holds the s//2 + 1 non-negative wavenumbers, the others
all s (in `fftfreq` order). Products are dealiased by the 2/3 rule: keep |m| ≤ K = ⌊(s − 1)/3⌋ on every axis.
"""

from __future__ import annotations

import numpy as np


def dealias_cutoff(s: int) -> int:
    """Largest retained wavenumber K of the 2/3 rule on s points: 3K < s."""
    return (s - 1) // 3


def rfft_wavenumbers(s: int, dim: int) -> list[np.ndarray]:
    """Integer wavenumbers (m_1, …, m_dim) of the rfftn layout (s, …, s, s//2 + 1), each broadcast to that shape."""
    axes = [np.fft.fftfreq(s, d=1.0 / s)] * (dim - 1) + [np.arange(s // 2 + 1, dtype=np.float64)]
    if dim == 1:
        return axes
    return list(np.meshgrid(*axes, indexing="ij"))


def dealias_mask(s: int, dim: int) -> np.ndarray:
    """The 2/3-rule projection P on the rfftn layout: True where |m_i| ≤ ⌊(s − 1)/3⌋ on every axis."""
    K = dealias_cutoff(s)
    return np.logical_and.reduce([np.abs(m) <= K for m in rfft_wavenumbers(s, dim)])
