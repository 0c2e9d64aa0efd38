"""2-D incompressible Navier–Stokes (vorticity form) on the unit torus, following the FNO protocol.

Problem (Li et al., ICLR 2021, §5.3):

    w_t + u·∇w = ν Δw + f,   u = (ψ_y, −ψ_x),   −Δψ = w,   (x, y) ∈ [0, 1)² periodic,

f = 0.1 (sin 2π(x + y) + cos 2π(x + y)), ν = 1e−3 by default, w0 ~ N(0, σ² (−Δ + τ² I)^(−α)) with
σ = 7^(3/2), τ = 7, α = 2.5: σ is the KL amplitude of FNO's public generator (its `GaussianRF` multiplies
the square-root eigenvalues by τ^((2α − d)/2)), so the covariance constant is σ² = 7³ — the paper prints
7^(3/2), the same convention slip that would make Burgers' 625 = 25² read as 25.

Space: Fourier pseudo-spectral on x_i = i/s, y_j = j/s (arrays indexed [i, j], i along x), wavenumbers
k = 2π(m_x, m_y), ŵ = rfft2(w).  The advection term is evaluated on the grid and projected by the 2/3
rule P onto |m_x|, |m_y| ≤ K = ⌊(s − 1)/3⌋; the GRF and the forcing live inside P, so the state does.

Time: Crank–Nicolson for ν Δw with Heun (explicit trapezoid) for advection and forcing; with
N(ŵ) = P F[u·∇w] and D = ν|k|², one step of size h reads

    ŵ* = [(1 − hD/2) ŵ + h (f̂ − N(ŵ))] / (1 + hD/2)
    ŵ' = [(1 − hD/2) ŵ + h (f̂ − (N(ŵ) + N(ŵ*))/2)] / (1 + hD/2),

second order.  Snapshots land on the requested times exactly: the gap to the next requested
time is split into ⌈gap/dt⌉ equal steps (each ≤ dt).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import partial

import numpy as np
import torch
from tqdm.auto import tqdm

from opspec.data.generate.grf import periodic_grf_std, sample_periodic_grf
from opspec.data.generate.spectral import dealias_mask, rfft_wavenumbers
from opspec.data.generate.validate import check_int, check_nonnegative, check_positive, check_times
from opspec.core.grids import axis

GRF_SIGMA = 7.0**1.5
GRF_TAU = 7.0
GRF_ALPHA = 2.5
FORCING_AMPLITUDE = 0.1


# The initial vorticity's GRF: covariance GRF_SIGMA² (−Δ + GRF_TAU² I)^(−GRF_ALPHA) on the 2/3-rule modes.
grf_std_2d = partial(periodic_grf_std, dim=2, sigma=GRF_SIGMA, tau=GRF_TAU, exponent=GRF_ALPHA)
sample_grf_2d_periodic = partial(sample_periodic_grf, dim=2, sigma=GRF_SIGMA, tau=GRF_TAU, exponent=GRF_ALPHA)


def fno_forcing(s: int, amplitude: float = FORCING_AMPLITUDE) -> np.ndarray:
    """f(x, y) = amplitude (sin 2π(x + y) + cos 2π(x + y)) on the (s, s) grid x_i = i / s."""
    x = axis(s, "periodic")
    phase = 2.0 * np.pi * (x[:, None] + x[None, :])
    return amplitude * (np.sin(phase) + np.cos(phase))


def default_time_step(solve_resolution: int) -> float:
    """dt = 0.01 · 64 / s: a fixed advective CFL number (relative error ~1e-6 against dt = 1e-3 at 64², ν = 1e−3, t = 20)."""
    return 0.64 / solve_resolution


def snapshot_steps(times: Sequence[float], time_step: float) -> list[tuple[int, float]]:
    """(steps, step size) to reach each requested time from the previous one (from t = 0), each step ≤ time_step."""
    plan, previous = [], 0.0
    for t in times:
        gap = t - previous
        n = math.ceil(gap / time_step * (1.0 - 1e-12)) if gap > 0 else 0
        plan.append((n, gap / n if n else 0.0))
        previous = t
    return plan


@torch.no_grad()
def solve_navier_stokes(
    w0: torch.Tensor,
    times: Sequence[float],
    viscosity: float = 1e-3,
    time_step: float = 1e-3,
    forcing: torch.Tensor | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Vorticity snapshots (b, len(times), s, s) of a batch w0 (b, s, s) at the requested times.

    `forcing` is an (s, s) field (None: unforced); the state and the forcing are projected onto
    the 2/3-rule modes first.  Every step is ≤ time_step and each requested time is hit exactly.
    """
    viscosity = check_nonnegative("viscosity", viscosity)
    time_step = check_positive("time_step", time_step)
    times = check_times(times)
    if w0.ndim != 3 or w0.shape[-1] != w0.shape[-2] or w0.shape[-1] < 4:
        raise ValueError(f"w0: expected a (batch, s, s) tensor with s >= 4, got shape {tuple(w0.shape)}")
    s, device = w0.shape[-1], w0.device
    mx, my = rfft_wavenumbers(s, 2)
    kx = torch.as_tensor(2.0 * np.pi * mx, dtype=w0.dtype, device=device)
    ky = torch.as_tensor(2.0 * np.pi * my, dtype=w0.dtype, device=device)
    k2 = kx**2 + ky**2
    inv_k2 = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
    keep = torch.as_tensor(dealias_mask(s, 2), device=device)
    f_hat = torch.zeros((), dtype=torch.complex128 if w0.dtype == torch.float64 else torch.complex64, device=device)
    if forcing is not None:
        f_hat = torch.fft.rfft2(forcing.to(device=device, dtype=w0.dtype)) * keep
    D = viscosity * k2

    def N(w_hat: torch.Tensor) -> torch.Tensor:
        psi_hat = w_hat * inv_k2
        u = torch.fft.irfft2(1j * ky * psi_hat, s=(s, s))  # u = ψ_y
        v = torch.fft.irfft2(-1j * kx * psi_hat, s=(s, s))  # v = −ψ_x
        w_x = torch.fft.irfft2(1j * kx * w_hat, s=(s, s))
        w_y = torch.fft.irfft2(1j * ky * w_hat, s=(s, s))
        return torch.fft.rfft2(u * w_x + v * w_y) * keep

    w_hat = torch.fft.rfft2(w0) * keep
    out = torch.empty((w0.shape[0], len(times), s, s), dtype=w0.dtype, device=device)
    plan = snapshot_steps(times, time_step)
    with tqdm(total=sum(n for n, _ in plan), desc="navier-stokes steps", unit="step", disable=not progress, leave=False) as bar:
        for index, (n, h) in enumerate(plan):
            explicit, implicit = 1.0 - 0.5 * h * D, 1.0 / (1.0 + 0.5 * h * D)
            for _ in range(n):
                Nw = N(w_hat)
                w_star = (explicit * w_hat + h * (f_hat - Nw)) * implicit
                w_hat = (explicit * w_hat + h * (f_hat - 0.5 * (Nw + N(w_star)))) * implicit
            bar.update(n)
            out[:, index] = torch.fft.irfft2(w_hat, s=(s, s))
    return out


def generate_navier_stokes(
    n: int,
    resolution: int,
    seed: int,
    *,
    times: Sequence[float],
    viscosity: float = 1e-3,
    time_step: float | None = None,
    solve_resolution: int | None = None,
    batch_size: int = 20,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Return an iterator over batches (w0 (b, s, s), snapshots (b, len(times), s, s)), float64 numpy, in sample order.

    The solve runs on `solve_resolution` points per axis (default: `resolution`, which must divide
    it) and is stored strided to `resolution`, as the FNO data were (solved at 256², stored at 64²);
    time_step None means `default_time_step(solve_resolution)`.
    Sample k draws w0 from default_rng(SeedSequence(seed).spawn(n)[k]) on its own, so w0 is
    bit-identical for every batch size and device; the batched solve agrees to round-off.
    """
    check_int("n", n, 1, "number of samples")
    check_int("resolution", resolution, 4, "grid points per axis of the stored periodic grid")
    check_int("seed", seed, 0, "seed for numpy.random.SeedSequence")
    check_int("batch_size", batch_size, 1, "samples per yielded batch")
    solve_resolution = resolution if solve_resolution is None else solve_resolution
    check_int("solve_resolution", solve_resolution, resolution, "grid points per axis of the solve, a multiple of resolution")
    if solve_resolution % resolution:
        raise ValueError(f"solve_resolution: expected a multiple of resolution={resolution}, got {solve_resolution}")
    check_positive("viscosity", viscosity)
    time_step = default_time_step(solve_resolution) if time_step is None else check_positive("time_step", time_step)
    times = check_times(times)
    return _ns_batches(int(n), int(resolution), int(solve_resolution), int(seed), times, viscosity, time_step,
                       int(batch_size), torch.device(device), progress)


def _ns_batches(
    n: int, s: int, solve_s: int, seed: int, times: list[float], viscosity: float, time_step: float,
    batch_size: int, device: torch.device, progress: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Produce the batches of `generate_navier_stokes` lazily (split off so bad arguments raise eagerly)."""
    children = np.random.SeedSequence(seed).spawn(n)
    stride = solve_s // s
    forcing = torch.from_numpy(fno_forcing(solve_s))
    with tqdm(total=n, desc="navier-stokes", unit="sample", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            w0 = np.stack([sample_grf_2d_periodic(solve_s, np.random.default_rng(child)) for child in children[start:stop]])
            w = solve_navier_stokes(torch.from_numpy(w0).to(device), times, viscosity, time_step, forcing, progress)
            bar.update(stop - start)
            yield w0[:, ::stride, ::stride], w[..., ::stride, ::stride].cpu().numpy()
