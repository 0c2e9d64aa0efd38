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

import numpy as np
import torch
from tqdm.auto import tqdm

from opspec.data.generate.burgers import _check_positive, dealias_cutoff
from opspec.data.generate.darcy import _check_int

GRF_SIGMA = 7.0**1.5
GRF_TAU = 7.0
GRF_ALPHA = 2.5
FORCING_AMPLITUDE = 0.1


def _wavenumbers(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers (m_x, m_y) of the (s, s//2 + 1) rfft2 layout, broadcast to that shape."""
    mx = np.fft.fftfreq(s, d=1.0 / s)[:, None] * np.ones((1, s // 2 + 1))
    my = np.arange(s // 2 + 1, dtype=np.float64)[None, :] * np.ones((s, 1))
    return mx, my


def dealias_mask(s: int) -> np.ndarray:
    """The 2/3-rule projection P on the rfft2 layout: True where |m_x|, |m_y| ≤ ⌊(s − 1)/3⌋."""
    mx, my = _wavenumbers(s)
    K = dealias_cutoff(s)
    return (np.abs(mx) <= K) & (my <= K)


def grf_std_2d(s: int, sigma: float = GRF_SIGMA, tau: float = GRF_TAU, alpha: float = GRF_ALPHA) -> np.ndarray:
    """KL standard deviations σ (4π²|m|² + τ²)^(−α/2) on the rfft2 layout; 0 at m = 0 and outside P."""
    mx, my = _wavenumbers(s)
    std = sigma * (4.0 * np.pi**2 * (mx**2 + my**2) + tau**2) ** (-alpha / 2.0)
    std[0, 0] = 0.0
    return np.where(dealias_mask(s), std, 0.0)


def sample_grf_2d_periodic(s: int, rng: np.random.Generator, **grf: float) -> np.ndarray:
    """One zero-mean periodic GRF (s, s): w = F⁻¹[σ_m · F_ortho(ξ)], ξ ~ N(0, I) white noise on the grid.

    F_ortho(ξ)_m has E|·|² = 1 and exact Hermitian symmetry, so the coefficient of w on each real
    orthonormal Fourier mode (√2 cos, √2 sin of 2π m·x) is N(0, σ_m²).
    """
    xi_hat = np.fft.rfft2(rng.standard_normal((s, s)), norm="ortho")
    return np.fft.irfft2(grf_std_2d(s, **grf) * xi_hat, s=(s, s), norm="forward")


def fno_forcing(s: int, amplitude: float = FORCING_AMPLITUDE) -> np.ndarray:
    """f(x, y) = amplitude (sin 2π(x + y) + cos 2π(x + y)) on the (s, s) grid x_i = i / s."""
    x = np.arange(s) / s
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


def _check_times(times: Sequence[float]) -> list[float]:
    """Validate snapshot times: finite, >= 0, strictly increasing, at least one."""
    out = [float(t) for t in times]
    if not out or any(not math.isfinite(t) or t < 0 for t in out) or any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"times: expected a non-empty strictly increasing list of finite times >= 0, got {list(times)}")
    return out


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
    viscosity = float(viscosity)
    if not math.isfinite(viscosity) or viscosity < 0:
        raise ValueError(f"viscosity: expected a finite number >= 0, got {viscosity!r}")
    time_step = _check_positive("time_step", time_step)
    times = _check_times(times)
    if w0.ndim != 3 or w0.shape[-1] != w0.shape[-2] or w0.shape[-1] < 4:
        raise ValueError(f"w0: expected a (batch, s, s) tensor with s >= 4, got shape {tuple(w0.shape)}")
    s, device = w0.shape[-1], w0.device
    mx, my = _wavenumbers(s)
    kx = torch.as_tensor(2.0 * np.pi * mx, dtype=w0.dtype, device=device)
    ky = torch.as_tensor(2.0 * np.pi * my, dtype=w0.dtype, device=device)
    k2 = kx**2 + ky**2
    inv_k2 = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
    keep = torch.as_tensor(dealias_mask(s), device=device)
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
    _check_int("n", n, 1, "number of samples")
    _check_int("resolution", resolution, 4, "grid points per axis of the stored periodic grid")
    _check_int("seed", seed, 0, "seed for numpy.random.SeedSequence")
    _check_int("batch_size", batch_size, 1, "samples per yielded batch")
    solve_resolution = resolution if solve_resolution is None else solve_resolution
    _check_int("solve_resolution", solve_resolution, resolution, "grid points per axis of the solve, a multiple of resolution")
    if solve_resolution % resolution:
        raise ValueError(f"solve_resolution: expected a multiple of resolution={resolution}, got {solve_resolution}")
    _check_positive("viscosity", viscosity)
    time_step = default_time_step(solve_resolution) if time_step is None else _check_positive("time_step", time_step)
    times = _check_times(times)
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
