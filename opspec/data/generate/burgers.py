"""1-D viscous Burgers data following the FNO protocol (Li et al., ICLR 2021).

Problem: u_t + (u²/2)_x = ν u_xx on the periodic unit interval, map u(·, 0) ↦ u(·, T), T = 1,
ν = 0.1 by default, u0 ~ N(0, σ² (−Δ + τ² I)^(−γ)) with σ = 25, τ = 5, γ = 2 (covariance 625(−Δ + 25I)^(−2)).

Space: Fourier pseudo-spectral on x_j = j / s (j = 0..s−1), wavenumbers k_m = 2πm.  With
v = û (numpy/torch `rfft` coefficients) the equation is the diagonal-plus-nonlinear system

    v_t = L v + N(v),   L = −ν k²,   N(v) = −(i k / 2) P F[(F⁻¹ v)²],

P the 2/3-rule projection onto |m| ≤ K = ⌊(s − 1)/3⌋ (3K < s, so the square of a field with
modes ≤ K aliases only onto modes > K, which P removes).  The state is kept inside P: the GRF is
drawn on modes 1..K, so the stored u0 is exactly the solver's initial condition.

Time: ETDRK4 (Cox & Matthews 2002) with its φ-function coefficients evaluated by the contour
integral of Kassam & Trefethen (2005), which is exact for the stiff diffusion and 4th order overall.
T is covered by n = ⌈T / dt⌉ equal steps h = T / n ≤ dt, so the final time is hit exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial

import numpy as np
import torch
from tqdm.auto import tqdm

from opspec.data.generate.grf import periodic_grf_std, sample_periodic_grf
from opspec.data.generate.spectral import dealias_mask, rfft_wavenumbers
from opspec.data.generate.validate import check_int, check_positive

GRF_SIGMA = 25.0
GRF_TAU = 5.0
GRF_GAMMA = 2.0


# The initial condition's GRF: covariance GRF_SIGMA² (−Δ + GRF_TAU² I)^(−GRF_GAMMA) on the 2/3-rule modes.
grf_std_1d = partial(periodic_grf_std, dim=1, sigma=GRF_SIGMA, tau=GRF_TAU, exponent=GRF_GAMMA)
sample_grf_1d = partial(sample_periodic_grf, dim=1, sigma=GRF_SIGMA, tau=GRF_TAU, exponent=GRF_GAMMA)


def etdrk4_coefficients(L: np.ndarray, h: float, contour_points: int = 64) -> tuple[np.ndarray, ...]:
    """E = e^{hL}, E2 = e^{hL/2}, Q, f1, f2, f3 of ETDRK4 for a real diagonal L (Kassam–Trefethen contour means).

    With z = hL + r over r on the unit circle:  Q = h⟨(e^{z/2} − 1)/z⟩,
    f1 = h⟨(−4 − z + e^z (4 − 3z + z²))/z³⟩,  f2 = h⟨(2 + z + e^z (z − 2))/z³⟩,
    f3 = h⟨(−4 − 3z − z² + e^z (4 − z))/z³⟩.
    """
    hL = h * np.asarray(L, dtype=np.float64)
    r = np.exp(1j * np.pi * (np.arange(1, contour_points + 1) - 0.5) / contour_points)
    z = hL[..., None] + r
    ez = np.exp(z)
    Q = h * np.mean((np.exp(z / 2) - 1.0) / z, axis=-1).real
    f1 = h * np.mean((-4.0 - z + ez * (4.0 - 3.0 * z + z**2)) / z**3, axis=-1).real
    f2 = h * np.mean((2.0 + z + ez * (z - 2.0)) / z**3, axis=-1).real
    f3 = h * np.mean((-4.0 - 3.0 * z - z**2 + ez * (4.0 - z)) / z**3, axis=-1).real
    return np.exp(hL), np.exp(hL / 2), Q, f1, f2, f3


@torch.no_grad()
def solve_burgers(
    u0: torch.Tensor,
    viscosity: float = 0.1,
    time: float = 1.0,
    time_step: float = 1e-3,
) -> torch.Tensor:
    """Advance a batch u0 (b, s) on x_j = j / s to t = `time` by dealiased ETDRK4; returns (b, s) on u0's device.

    The state is projected onto the 2/3-rule modes first (a no-op for `sample_grf_1d` fields).
    """
    viscosity = check_positive("viscosity", viscosity)
    time = check_positive("time", time)
    time_step = check_positive("time_step", time_step)
    if u0.ndim != 2 or u0.shape[-1] < 4:
        raise ValueError(f"u0: expected a (batch, s) tensor with s >= 4, got shape {tuple(u0.shape)}")
    s = u0.shape[-1]
    n_steps = math.ceil(time / time_step * (1.0 - 1e-12))
    h = time / n_steps
    (m,) = rfft_wavenumbers(s, 1)
    k = 2.0 * np.pi * m
    E, E2, Q, f1, f2, f3 = (
        torch.as_tensor(c, dtype=u0.dtype, device=u0.device) for c in etdrk4_coefficients(-viscosity * k**2, h)
    )
    keep = torch.as_tensor(dealias_mask(s, 1), device=u0.device)
    g = torch.as_tensor(-0.5j * k, device=u0.device) * keep  # N(v) = g · F[(F⁻¹ v)²]

    def N(v: torch.Tensor) -> torch.Tensor:
        return g * torch.fft.rfft(torch.fft.irfft(v, n=s) ** 2)

    v = torch.fft.rfft(u0) * keep
    for _ in range(n_steps):
        Nv = N(v)
        a = E2 * v + Q * Nv
        Na = N(a)
        b = E2 * v + Q * Na
        Nb = N(b)
        c = E2 * a + Q * (2.0 * Nb - Nv)
        Nc = N(c)
        v = E * v + f1 * Nv + 2.0 * f2 * (Na + Nb) + f3 * Nc
    return torch.fft.irfft(v, n=s)


def generate_burgers(
    n: int,
    resolution: int,
    seed: int,
    *,
    viscosity: float = 0.1,
    time: float = 1.0,
    time_step: float = 1e-3,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Return an iterator over batches (u0, u(·, time)), each (b, s) float64 numpy, in sample order.

    Sample k draws its initial condition from default_rng(SeedSequence(seed).spawn(n)[k]) on its
    own, so u0 is bit-identical for every batch size and device; the batched solve in float64
    agrees across batch sizes to round-off.  Arguments are validated when called.
    """
    check_int("n", n, 1, "number of samples")
    check_int("resolution", resolution, 4, "grid points on the periodic interval")
    check_int("seed", seed, 0, "seed for numpy.random.SeedSequence")
    check_int("batch_size", batch_size, 1, "samples per yielded batch")
    for name, value in (("viscosity", viscosity), ("time", time), ("time_step", time_step)):
        check_positive(name, value)
    return _burgers_batches(int(n), int(resolution), int(seed), viscosity, time, time_step, int(batch_size),
                            torch.device(device), progress)


def _burgers_batches(
    n: int, s: int, seed: int, viscosity: float, time: float, time_step: float, batch_size: int,
    device: torch.device, progress: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Produce the batches of `generate_burgers` lazily (split off so bad arguments raise eagerly)."""
    children = np.random.SeedSequence(seed).spawn(n)
    with tqdm(total=n, desc="burgers", unit="sample", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            a = np.stack([sample_grf_1d(s, np.random.default_rng(child)) for child in children[start:stop]])
            u = solve_burgers(torch.from_numpy(a).to(device), viscosity, time, time_step)
            bar.update(stop - start)
            yield a, u.cpu().numpy()
