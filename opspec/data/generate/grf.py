"""Gaussian random fields, the generators' random inputs: Neumann (cosine) for Darcy, periodic (Fourier) for
Burgers and Navier–Stokes.

Neumann fields on the unit square by a cosine Karhunen-Loeve expansion follow the GRF routine used to
generate the FNO Darcy data (Li et al., ICLR 2021):

    psi ~ N(0, C),   C = tau^(2*alpha - 2) * (-Laplacian + tau^2 I)^(-alpha),

with the Laplacian on (0,1)^2 under zero Neumann boundary conditions.  Its L2-orthonormal
eigenfunctions are

    phi_k(x, y) = c_k1 cos(pi k1 x) * c_k2 cos(pi k2 y),   c_0 = 1, c_k = sqrt(2) (k >= 1),

with eigenvalues pi^2 (k1^2 + k2^2), so the Karhunen-Loeve expansion is

    psi(x, y) = sum_{k1, k2} sigma_k xi_k phi_k(x, y),   xi_k ~ N(0, 1) i.i.d.,
    sigma_k = tau^(alpha - 1) * (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha / 2),

truncated to 0 <= k1, k2 <= s - 1 and with the constant mode (0, 0) dropped (zero mean field).

Evaluation grid.  The MATLAB reference code synthesises with `idct2` (an inverse DCT-II), which
evaluates the cosines at the cell centres (i + 1/2) / s.  Here the field lives on the nodal grid
x_i = i / (s - 1), i = 0..s-1 (both boundaries included, h = 1 / (s - 1)), and cos(pi k x_i) =
cos(pi k i / (s - 1)) is exactly the DCT-I kernel, so we synthesise with scipy's DCT-I.  The
samples are therefore exact draws of the truncated expansion above at the nodes; relative to the
MATLAB code the only difference is that half-cell shift of the sample points.

Periodic fields on the torus [0, 1)^dim have covariance sigma^2 (-Laplacian + tau^2 I)^(-exponent), mean
mode 0, drawn inside the 2/3-rule modes (`spectral.dealias_mask`) so a solver's initial state is exactly
the stored field: w = F^-1[sigma_m F_ortho(xi)], xi ~ N(0, I) white noise on the grid x_i = i/s.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

from opspec.data.generate.spectral import dealias_mask, rfft_wavenumbers


def grf_mode_std(s: int, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """Return the (s, s) Karhunen-Loeve standard deviations sigma_k (mean mode sigma_0 = 0)."""
    k = np.arange(s, dtype=np.float64)
    k1, k2 = np.meshgrid(k, k, indexing="ij")
    sigma = tau ** (alpha - 1.0) * (np.pi**2 * (k1**2 + k2**2) + tau**2) ** (-alpha / 2.0)
    sigma[0, 0] = 0.0
    return sigma


def synthesize_grf_2d(xi: np.ndarray, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """Map standard-normal KL weights xi (..., s, s) to field values psi on the s x s nodal grid."""
    s = xi.shape[-1]
    if xi.ndim < 2 or xi.shape[-2] != s:
        raise ValueError(f"xi: expected shape (..., s, s), got {xi.shape}")
    # Coefficients b_k of psi(x_i, y_j) = sum_k b_k cos(pi k1 x_i) cos(pi k2 y_j):
    # b_k = sigma_k * xi_k * c_k1 * c_k2, eigenfunction normalisations c_0 = 1, c_k = sqrt(2).
    c = np.full(s, np.sqrt(2.0))
    c[0] = 1.0
    b = grf_mode_std(s, alpha, tau) * np.outer(c, c) * xi
    # Unnormalised DCT-I: y_n = x_0 + (-1)^n x_{s-1} + 2 sum_{k=1}^{s-2} x_k cos(pi k n / (s-1)),
    # so halving the interior coefficients along each axis turns it into the plain cosine sum.
    w = np.full(s, 0.5)
    w[0] = w[-1] = 1.0
    return fft.dctn(b * np.outer(w, w), type=1, axes=(-2, -1))


def sample_grf_2d(
    n: int, s: int, rng: np.random.Generator, alpha: float = 2.0, tau: float = 3.0
) -> np.ndarray:
    """Draw n fields psi ~ N(0, tau^(2 alpha - 2) (-Laplacian + tau^2)^(-alpha)) on the nodal grid.

    The Laplacian carries zero Neumann boundary conditions on (0,1)^2; the field is the cosine
    Karhunen-Loeve expansion with modes 0 <= k1, k2 <= s - 1, the mean (0, 0) mode dropped,
    evaluated at x_i = i / (s - 1) by a batched DCT-I (see the module docstring).
    Returns an (n, s, s) float64 array indexed [sample, i (x), j (y)].
    """
    if n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n}")
    if s < 2:
        raise ValueError(f"s: expected an integer >= 2, got {s}")
    xi = rng.standard_normal((n, s, s))
    return synthesize_grf_2d(xi, alpha, tau)


def periodic_grf_std(s: int, dim: int, *, sigma: float, tau: float, exponent: float) -> np.ndarray:
    """KL standard deviations sigma (4 pi^2 |m|^2 + tau^2)^(-exponent/2) on the rfftn layout of an s^dim
    periodic grid; 0 at m = 0 and outside the 2/3-rule modes."""
    m = rfft_wavenumbers(s, dim)
    std = sigma * (4.0 * np.pi**2 * sum(mi**2 for mi in m) + tau**2) ** (-exponent / 2.0)
    std[(0,) * dim] = 0.0
    return np.where(dealias_mask(s, dim), std, 0.0)


def sample_periodic_grf(s: int, rng: np.random.Generator, *, dim: int, sigma: float, tau: float,
                        exponent: float) -> np.ndarray:
    """One zero-mean periodic GRF of shape (s,) * dim: w = F^-1[sigma_m F_ortho(xi)], xi ~ N(0, I) on the grid.

    F_ortho(xi)_m has E|.|^2 = 1 and exact Hermitian symmetry, so the coefficient of w on each real
    orthonormal Fourier mode (sqrt 2 cos, sqrt 2 sin of 2 pi m.x) is N(0, sigma_m^2).
    """
    axes = tuple(range(-dim, 0))
    xi_hat = np.fft.rfftn(rng.standard_normal((s,) * dim), axes=axes, norm="ortho")
    std = periodic_grf_std(s, dim, sigma=sigma, tau=tau, exponent=exponent)
    return np.fft.irfftn(std * xi_hat, s=(s,) * dim, axes=axes, norm="forward")
