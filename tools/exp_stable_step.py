"""Largest non-diverging step of GD and of Muon (exact polar steps) on matrix quadratics with set spectra.

Claim tested (Nguyen et al., "Spectral Flattening Is All Muon Needs", arXiv 2605.13079): Muon's
maximal stable step size scales with the average singular value of the gradient, while gradient
descent's is bottlenecked by the largest (curvature).

Objective. f(W) = ½ tr(Eᵀ H E), E = W − W* (W* = 0 without loss of generality), W ∈ R^{n×n},
H = P diag(h) Pᵀ ≻ 0, so the gradient is G = H E. The start is set through its gradient:
G₀ = U diag(g) Vᵀ with g chosen and E₀ = H⁻¹ G₀. P, U, V are independent Haar-random orthogonal
matrices (drawn from --seed, the same for every spread), so curvature directions and the gradient's
singular directions are not aligned: the dynamics are matrix-valued, not n decoupled scalars.
Muon here is W ← W − η polar(G) with polar(G) = U Vᵀ from a float64 SVD, no momentum.

Predictions (exact for a quadratic: f(W − ηD) = f(W) − η⟨G, D⟩ + ½η²⟨D, H D⟩).
- GD, D = G: E ← (I − ηH) E; every curvature component shrinks iff |1 − ηh_i| ≤ 1, so
  η*_GD = 2/h_max, set by the largest curvature whatever the gradient's spectrum.
- Muon, D = O = polar(G): ⟨G, O⟩ = ‖G‖_* = Σσ_i(G), and for a square full-rank G, O Oᵀ = I so
  ⟨O, H O⟩ = tr H. The step lowers f iff η < 2‖G‖_*/tr H = 2 σ̄(G)/h̄ (σ̄: the mean singular value
  of the gradient; h̄: the mean curvature). Predicted η*_Muon = 2 σ̄(G₀)/h̄, the first step's bound;
  what is measured is the T-step rule below. The worst-case form through L = h_max, 2σ̄/h_max, is
  sufficient but loose by h_max/h̄.

Non-diverging means f(W_t) ≤ C·(1 + 1e-9)·f(W₀) for every t ≤ T (T = 500, C = --max-rise = 1):
the loss never rises above its start. A fixed-size polar step cannot run off to infinity on a
quadratic (a step lowers f whenever ‖G‖_* > η tr H / 2, so f stays bounded), so for Muon
"diverging" has to mean "the loss goes up". The same rule is applied to GD, where it is the usual
threshold: f_t ≤ f₀ for all t iff η ≤ 2/h_max (given a component on the top curvature direction);
past it that component grows by |1 − ηh_max| > 1 a step, and T = 500 makes it show within ~0.5% of
the bound. The 1e-9 absorbs rounding on Muon's period-2 orbits, which come back to f₀ exactly.
With C > 1 the first step's bound for Muon becomes η ≤ (‖G‖_* + √(‖G‖_*² + 2(C − 1) f₀ tr H))/tr H,
which depends on f₀ (the distance to W*) and is no longer 2σ̄/h̄: the table's "one-step" column
compares against it, so --max-rise 2 shows how much the claim's form rests on the definition.

Sweeps, in the spread s (u_i = i/(n−1), i = 0 … n−1; h normalized to mean h̄ = 1):
  A. gradient spread at fixed curvature: h ∝ 10^(−2u) (condition number 100),
     g = 10^(−s·u): σ_max(G₀) = 1 throughout, σ̄(G₀) falls with s.
  B. curvature spread at a flat gradient: g = 1 (G₀ orthogonal), h ∝ 10^(−s·u):
     h_max grows with s, h̄ and σ̄(G₀) do not.
s ∈ {0, 0.5, …, 3}. In A the σ̄ prediction for Muon moves while a σ_max-based one would not (the
table shows the measured step over 2σ_max(G₀)/h̄ too); in B GD's prediction moves and Muon's does not.

Bisection: the stable set is taken to be an interval (0, η*]; η* is bracketed in [1e-4, 1e3]
(widened if needed) and narrowed on a log scale to a relative width 1e-4. A check then runs 17
steps log-spaced over [η*/2, 2η*] and counts those that contradict the interval assumption
(stable above η* or unstable below it): the "checks" column.

Verdict: held when measured/predicted (2/h_max for GD, 2σ̄(G₀)/h̄ for Muon) is within [0.9, 1.1]
at every spread for both methods.

    OMP_NUM_THREADS=1 python -m tools.exp_stable_step                       # ~20 s on a 2-core CPU
    python -m tools.exp_stable_step --n 64 --steps 1000 --seed 1 --out-md /tmp/stable.md
    python -m tools.exp_stable_step --max-rise 2 --plot /tmp/stable_rise2.png     # "loss ≤ 2 f(W₀)"
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.linalg

from tools.harness import markdown_table, pyplot, save_figure

Array = np.ndarray
RISE = 1e-9  # relative slack on "the loss never exceeds C times its start" (rounding on exact returns)
SPREADS = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
FIXED_CURVATURE_SPREAD = 2.0  # sweep A's curvature: condition number 10^2
TOLERANCE = 0.1  # verdict: |measured/predicted − 1| ≤ this at every spread


def log_spectrum(spread: float, n: int) -> Array:
    """10^(−spread·u), u = 0 … 1 evenly: largest value 1, condition number 10^spread."""
    return 10.0 ** (-spread * np.linspace(0.0, 1.0, n))


def haar_orthogonal(rng: np.random.Generator, n: int) -> Array:
    """A Haar-random n×n orthogonal matrix (QR of a Gaussian with the signs of R's diagonal fixed)."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


def make_problem(h: Array, g: Array, seed: int) -> tuple[Array, Array]:
    """H = P diag(h) Pᵀ and E₀ = H⁻¹ U diag(g) Vᵀ (so the first gradient's singular values are g)."""
    rng = np.random.default_rng([seed, 2])
    n = len(h)
    P, U, V = (haar_orthogonal(rng, n) for _ in range(3))
    H = (P * h) @ P.T
    return H, np.linalg.solve(H, (U * g) @ V.T)


def loss(H: Array, E: Array) -> float:
    """f = ½ tr(Eᵀ H E)."""
    return 0.5 * float(np.sum(E * (H @ E)))


def polar_svd(G: Array) -> Array:
    """U Vᵀ of a square G from a float64 SVD."""
    # LAPACK's gesdd can fail to converge on exactly repeated singular values (it did here on an
    # orthogonal gradient); gesvd is slower and does not.
    try:
        U, _, Vt = np.linalg.svd(G)
    except np.linalg.LinAlgError:
        U, _, Vt = scipy.linalg.svd(G, lapack_driver="gesvd")
    return U @ Vt


def stays_below_start(H: Array, E0: Array, eta: float, method: str, steps: int, max_rise: float = 1.0) -> bool:
    """True iff f(W_t) ≤ max_rise·(1 + RISE)·f(W₀) for t = 1 … steps, GD or Muon with constant step eta."""
    E = E0.copy()
    limit = max_rise * (1.0 + RISE) * loss(H, E0)
    scale = np.linalg.norm(H @ E0)
    for _ in range(steps):
        G = H @ E
        if method == "gd":
            E = E - eta * G
        elif method == "muon":
            # A gradient at rounding level (the iterate landed on W*) has no direction to take.
            E = E - eta * (polar_svd(G) if np.linalg.norm(G) > 1e-14 * scale else 0.0)
        else:
            raise ValueError(f"method: expected gd or muon, got {method!r}")
        f = loss(H, E)
        if not f <= limit:
            return False
    return True


def bisect_limit(is_stable: Callable[[float], bool], lo: float = 1e-4, hi: float = 1e3, rtol: float = 1e-4) -> float:
    """Largest stable step, assuming the stable steps form an interval (0, η*]: log-scale bisection."""
    while not is_stable(lo):
        lo /= 10
        if lo < 1e-12:
            raise RuntimeError("no stable step found down to 1e-12")
    while is_stable(hi):
        hi *= 10
        if hi > 1e12:
            raise RuntimeError("every step up to 1e12 is stable")
    while hi / lo > 1 + rtol:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if is_stable(mid) else (lo, mid)
    return lo


def interval_violations(is_stable: Callable[[float], bool], eta_star: float, points: int = 17) -> int:
    """Steps on a log grid over [η*/2, 2η*] that are stable above η* or unstable at or below it."""
    etas = np.geomspace(eta_star / 2, eta_star * 2, points)
    return sum(is_stable(float(e)) != (e <= eta_star * (1 + 1e-3)) for e in etas)  # 1e-3: the grid's middle is η*


@dataclass
class Row:
    """One spread of one sweep: the spectra's summary, measured limits and predictions."""

    sweep: str
    spread: float
    cond_g: float
    cond_h: float
    sigma_max: float
    sigma_mean: float
    h_max: float
    h_mean: float
    gd: float
    muon: float
    one_step: float
    gd_checks: int
    muon_checks: int

    @property
    def gd_pred(self) -> float:
        """2/h_max."""
        return 2.0 / self.h_max

    @property
    def muon_pred(self) -> float:
        """2σ̄(G₀)/h̄."""
        return 2.0 * self.sigma_mean / self.h_mean

    @property
    def muon_alt(self) -> float:
        """2σ_max(G₀)/h̄: what Muon's limit would be if it followed the largest singular value."""
        return 2.0 * self.sigma_max / self.h_mean


def muon_one_step_bound(H: Array, E0: Array, max_rise: float = 1.0) -> float:
    """Largest η with f(W₀ − η polar(G₀)) ≤ max_rise·f(W₀): (‖G‖_* + √(‖G‖_*² + 2(C−1) f₀ tr H))/tr H."""
    nuclear = float(np.linalg.svd(H @ E0, compute_uv=False).sum())
    trace = float(np.trace(H))
    return (nuclear + math.sqrt(nuclear**2 + 2 * (max_rise - 1) * loss(H, E0) * trace)) / trace


def measure(sweep: str, spread: float, h: Array, g: Array, seed: int, steps: int, max_rise: float = 1.0) -> Row:
    """Bisect GD's and Muon's limits on the problem with curvatures h and first-gradient spectrum g."""
    H, E0 = make_problem(h, g, seed)
    sigma = np.linalg.svd(H @ E0, compute_uv=False)
    limits, checks = {}, {}
    for method in ("gd", "muon"):
        is_stable = lambda eta, m=method: stays_below_start(H, E0, eta, m, steps, max_rise)  # noqa: E731
        limits[method] = bisect_limit(is_stable)
        checks[method] = interval_violations(is_stable, limits[method])
    return Row(sweep, spread, float(sigma[0] / sigma[-1]), float(h.max() / h.min()), float(sigma[0]), float(sigma.mean()),
               float(h.max()), float(h.mean()), limits["gd"], limits["muon"], muon_one_step_bound(H, E0, max_rise),
               checks["gd"], checks["muon"])


def run_sweeps(
    n: int = 32, spreads: list[float] = SPREADS, steps: int = 500, seed: int = 0, max_rise: float = 1.0,
    progress: bool = True,
) -> list[Row]:
    """Sweep A (gradient spread, curvature condition number 100) and sweep B (curvature spread, flat gradient)."""
    rows = []
    for sweep in ("A", "B"):
        for s in spreads:
            start = time.perf_counter()
            if sweep == "A":
                h, g = log_spectrum(FIXED_CURVATURE_SPREAD, n), log_spectrum(s, n)
            else:
                h, g = log_spectrum(s, n), np.ones(n)
            rows.append(row := measure(sweep, s, h / h.mean(), g, seed, steps, max_rise))
            if progress:
                print(f"sweep {sweep} s={s:g}: GD {row.gd:.4g} (pred {row.gd_pred:.4g}), Muon {row.muon:.4g} "
                      f"(pred {row.muon_pred:.4g}) [{time.perf_counter() - start:.1f} s]", file=sys.stderr, flush=True)
    return rows


def claim_held(rows: list[Row]) -> bool:
    """Every measured/predicted ratio, GD and Muon, within 1 ± TOLERANCE."""
    return all(abs(r.gd / r.gd_pred - 1) <= TOLERANCE and abs(r.muon / r.muon_pred - 1) <= TOLERANCE for r in rows)


def markdown(rows: list[Row], args: argparse.Namespace, seconds: float) -> str:
    """The table of limits and ratios, the verdict and notes as Markdown."""
    bound = "f(W₀)" if args.max_rise == 1 else f"{args.max_rise:g}·f(W₀)"
    lines = [
        f"Largest step η* with f(W_t) ≤ {bound} for all t ≤ {args.steps} on f = ½tr(EᵀHE), W {args.n}×{args.n}, "
        f"seed {args.seed}. A: gradient spread, H fixed (cond 100). B: curvature spread, G₀ orthogonal. "
        "σ_max(G₀) = 1 and mean curvature h̄ = 1 throughout; ratio = measured/predicted.",
        "",
    ]
    header = ["sweep", "s", "cond G₀", "cond H", "σ̄(G₀)", "h_max", "GD η*", "2/h_max", "GD ratio", "Muon η*", "2σ̄/h̄",
              "Muon ratio", "η*/(2σ_max/h̄)", "η*/one-step", "checks"]
    cells = [[r.sweep, f"{r.spread:g}", f"{r.cond_g:.3g}", f"{r.cond_h:.3g}", f"{r.sigma_mean:.3g}", f"{r.h_max:.3g}",
              f"{r.gd:.4g}", f"{r.gd_pred:.4g}", f"{r.gd / r.gd_pred:.3f}", f"{r.muon:.4g}", f"{r.muon_pred:.4g}",
              f"{r.muon / r.muon_pred:.3f}", f"{r.muon / r.muon_alt:.3f}", f"{r.muon / r.one_step:.3f}",
              f"{r.gd_checks}/{r.muon_checks}"] for r in rows]
    lines += markdown_table(header, cells, ["left"] + ["right"] * (len(header) - 1)).splitlines()
    gd_ratios = [r.gd / r.gd_pred for r in rows]
    mu_ratios = [r.muon / r.muon_pred for r in rows]
    lines += [
        "",
        f"**Claim {'held' if claim_held(rows) else 'did not hold'}**: measured/predicted GD "
        f"{min(gd_ratios):.3f}–{max(gd_ratios):.3f} (prediction 2/h_max), Muon {min(mu_ratios):.3f}–{max(mu_ratios):.3f} "
        f"(prediction 2σ̄(G₀)/h̄) over all spreads (rule: within 1 ± {TOLERANCE:g}).",
        "",
        "Notes: η* by log-scale bisection to 1e-4 relative. Muon = exact float64 SVD polar step, no momentum. "
        "η*/(2σ_max/h̄): Muon's limit over a prediction that follows the largest singular value instead of the mean. "
        "η*/one-step: over the largest step whose first update stays within the bound, "
        "(‖G₀‖_* + √(‖G₀‖_*² + 2(C−1) f₀ tr H))/tr H, which is 2σ̄/h̄ for C = 1. "
        "checks = GD/Muon steps out of 17 on [η*/2, 2η*] that contradict the stable steps being one interval (0, η*]. "
        f"Run time {seconds:.0f} s.",
    ]
    return "\n".join(lines)


def plot(rows: list[Row], path: Path, max_rise: float = 1.0) -> Path:
    """Three panels, log axes: limits vs spread for sweeps A and B with predictions, and measured vs predicted."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt = pyplot()

    def plain(axis) -> None:
        """Ticks at 1, 2, 5 × 10^k labelled as plain numbers (no crowded minor labels)."""
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    panels = (
        (axes[0], "A", "condition number of the first gradient G₀ (H fixed, cond 100)", "cond_g", ("upper right", (1.0, 0.92))),
        (axes[1], "B", "condition number of the curvature H (G₀ orthogonal)", "cond_h", ("lower left", (0.0, 0.0))),
    )
    for ax, sweep, xlabel, x_field, where in panels:
        sub = [r for r in rows if r.sweep == sweep]
        x = [getattr(r, x_field) for r in sub]
        ax.plot(x, [r.gd_pred for r in sub], "C0--", label="GD predicted 2/h_max")
        ax.plot(x, [r.gd for r in sub], "C0o", label="GD measured")
        ax.plot(x, [r.muon_pred for r in sub], "C1--", label="Muon predicted 2σ̄(G₀)/h̄")
        ax.plot(x, [r.muon for r in sub], "C1s", label="Muon measured")
        ax.plot(x, [r.muon_alt for r in sub], ":", color="gray", label="if Muon followed σ_max: 2σ_max(G₀)/h̄")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("largest stable step η*")
        ax.set_title(f"Sweep {sweep}", fontsize=10)
        plain(ax.yaxis)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, loc=where[0], bbox_to_anchor=where[1])
    ax = axes[2]
    ax.loglog([r.gd_pred for r in rows], [r.gd for r in rows], "C0o", label="GD vs 2/h_max")
    ax.loglog([r.muon_pred for r in rows], [r.muon for r in rows], "C1s", mfc="none", label="Muon vs 2σ̄(G₀)/h̄")
    lo = min(min(r.gd_pred, r.muon_pred, r.gd, r.muon) for r in rows) / 1.5
    hi = max(max(r.gd_pred, r.muon_pred, r.gd, r.muon) for r in rows) * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="measured = predicted")
    ax.set_xlabel("predicted η*")
    ax.set_ylabel("measured η*")
    ax.set_title("All spreads, both sweeps", fontsize=10)
    plain(ax.xaxis)
    plain(ax.yaxis)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    bound = "f(W₀)" if max_rise == 1 else f"{max_rise:g}·f(W₀)"
    fig.suptitle(f"Largest step keeping f(W_t) ≤ {bound} on a matrix quadratic: GD vs Muon (exact polar)", fontsize=11)
    return save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    """CLI: run both sweeps, print the Markdown table, save the plot."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32, help="W is n×n")
    p.add_argument("--spreads", type=float, nargs="+", default=SPREADS, help="log10 condition numbers swept")
    p.add_argument("--steps", type=int, default=500, help="iterations T the loss must stay below its start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-rise", type=float, default=1.0, help="C: stable while f(W_t) ≤ C·f(W₀)")
    p.add_argument("--plot", type=Path, default=Path("docs/figures/exp_stable_step.png"))
    p.add_argument("--out-md", type=Path, default=None, help="also write the Markdown here")
    args = p.parse_args(argv)

    start = time.perf_counter()
    rows = run_sweeps(args.n, sorted(args.spreads), args.steps, args.seed, args.max_rise)
    text = markdown(rows, args, time.perf_counter() - start)
    print(text)
    if args.out_md:
        args.out_md.write_text(text + "\n")
    print(f"plot: {plot(rows, args.plot, args.max_rise)}", file=sys.stderr)


if __name__ == "__main__":
    main()
