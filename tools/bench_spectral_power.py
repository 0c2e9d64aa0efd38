"""Accuracy and cost of `spectral_power` (Ψ_p(G) = U Σ^p Vᴴ); prints the Markdown tables of docs/spectral_power.md.

Inputs: for each condition number κ and each case (real / complex, 64×64 / 64×128), a batch of
BATCH matrices G = U diag(σ) Vᴴ with σ log-spaced in [1/κ, 1] and random U, V, rounded to
float32 / complex64. Reference: U Σ^p Vᴴ from torch.linalg.svd of that rounded input in float64.
Error: ‖Ψ_p − U Σ^p Vᴴ‖_F / ‖U Σ^p Vᴴ‖_F, the worst matrix of the batch (and of the cases, where
a table says so). Compute dtype float32 unless a table says float64.

Tables:
1. p = 0: `polar` (Polar Express) by steps, against the Gram route X·A^(−1/2).
2. p = 1/2, 1/4 (the Gram route) over a grid of (eps, steps), and whether rank-1 / rank-8 input
   stays finite (a negative rounding eigenvalue of the Gram matrix that eps does not cover diverges;
   the most negative one is printed below the table).
3. Every case at the defaults.
4. Design checks at the defaults: the steps of runs 2 and 3; the inverse fourth root taken as
   (Â^(−1/2))^(1/2) instead of (Â^(1/2))^(−1/2); and Q·(QᴴX)^p with Q = polar(X), a route that
   never forms the Gram matrix.
5. Convergence by steps at the default eps, 64×64 and 256×256 (real, 2 matrices).
6. float64 compute: a few (eps, steps), and rank-1 / rank-8 input.
7. ms per call for a batch of 576 complex 64×64 matrices (an FNO's per-mode batch).

    OMP_NUM_THREADS=1 python -m tools.bench_spectral_power        # ~1-2 min on a 2-core CPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import torch
from torch import Tensor

import opspec.optim.spectral_power  # noqa: F401  (the module; the package re-exports the function)
from opspec.optim.polar import frobenius_norms, polar
from opspec.training.runtime import device_name, load_average
from tools.harness import markdown_table

SP = sys.modules["opspec.optim.spectral_power"]
spectral_power = SP.spectral_power

KAPPAS = (1e1, 1e2, 1e3, 1e4)
CASES = (("real", 64, 64), ("real", 64, 128), ("complex", 64, 64), ("complex", 64, 128))
BATCH = 8
EPS_GRID = (1e-5, 1e-6, 1e-7)
STEPS_GRID = (12, 16, 20, 25)
POLAR_STEPS_GRID = (6, 8, 10, 12, 15)
POWERS = (0.0, 0.25, 0.5)
P_NAME = {0.0: "0", 0.25: "1/4", 0.5: "1/2"}

Method = Callable[[Tensor, float], Tensor]


# ---------------------------------------------------------------------------------------------
# inputs and errors


def sample(kappa: float, kind: str, m: int, n: int, dtype: torch.dtype = torch.float32, batch: int = BATCH,
           seed: int = 0) -> Tensor:
    """A batch of U diag(σ) Vᴴ, σ log-spaced in [1/κ, 1], rounded to `dtype` (its complex type for "complex")."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.complex128 if kind == "complex" else torch.float64
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(batch, m, k, dtype=wide, generator=g))
    V, _ = torch.linalg.qr(torch.randn(batch, n, k, dtype=wide, generator=g))
    s = torch.logspace(0, -torch.log10(torch.tensor(kappa)).item(), k, dtype=torch.float64)
    G = (U * s.to(wide)) @ V.mH
    return G.to({torch.float32: torch.complex64, torch.float64: torch.complex128}[dtype] if kind == "complex" else dtype)


def low_rank(rank: int, kind: str, real: torch.dtype = torch.float32, batch: int = 32, side: int = 64,
             seed: int = 1) -> Tensor:
    """A batch of side × side matrices of the given rank (a product of random factors) in `real` or its complex type."""
    g = torch.Generator().manual_seed(seed)
    dtype = {torch.float32: torch.complex64, torch.float64: torch.complex128}[real] if kind == "complex" else real
    return torch.randn(batch, side, rank, dtype=dtype, generator=g) @ torch.randn(batch, rank, side, dtype=dtype, generator=g)


def reference(G: Tensor, p: float) -> Tensor:
    """U Σ^p Vᴴ of G by a float64 SVD."""
    G = G.to(torch.complex128 if G.is_complex() else torch.float64)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    return (U * S.pow(p).unsqueeze(-2).to(U.dtype)) @ Vh


def rel_error(out: Tensor, ref: Tensor) -> float:
    """max over the batch of ‖out − ref‖_F / ‖ref‖_F."""
    diff = (out.to(ref.dtype) - ref).flatten(1).norm(dim=1)
    return (diff / ref.flatten(1).norm(dim=1)).max().item()


class Suite:
    """The inputs of every (κ, case) with their references, made once."""

    def __init__(self, dtype: torch.dtype = torch.float32):
        self.inputs = {(kappa, case): sample(kappa, *case, dtype=dtype) for kappa in KAPPAS for case in CASES}
        self.refs = {(key, p): reference(G, p) for key, G in self.inputs.items() for p in POWERS}

    def error(self, method: Method, p: float, kappa: float, case: tuple | None = None) -> float:
        """The error of method(G, p) for one case, or the worst over all cases (case None)."""
        cases = CASES if case is None else (case,)
        return max(rel_error(method(self.inputs[kappa, c], p), self.refs[(kappa, c), p]) for c in cases)


# ---------------------------------------------------------------------------------------------
# the routes compared (the shipped one is `spectral_power`; the others reuse its pieces)


def _tall_unit(G: Tensor) -> tuple[Tensor, Tensor, bool]:
    """(X, ‖G‖_F, wide): X = G / ‖G‖_F as (B, m, n) with m ≥ n (conjugate-transposed if G is wide)."""
    m, n = G.shape[-2:]
    X = G.reshape(-1, m, n)
    wide = m < n
    if wide:
        X = X.mH
    norm = frobenius_norms(X)
    return X / norm, norm, wide


def _restore(out: Tensor, norm: Tensor, p: float, wide: bool) -> Tensor:
    out = out * norm.pow(p)
    return out.mH if wide else out


def gram_route(eps: float, steps: int) -> Method:
    """Ψ_p through the Gram matrix for every p, p = 0 included: X · A^(−1/2)."""
    def run(G: Tensor, p: float) -> Tensor:
        X, norm, wide = _tall_unit(G)
        return _restore(SP._gram_power(X, p, steps, eps), norm, p, wide)
    return run


def inverse_first(eps: float, steps: int, later: int | None = None) -> Method:
    """Ψ_{1/2}, Ψ_{1/4} with Â^(−1/4) = (Â^(−1/2))^(1/2) and Â^(−1/8) = (Â^(−1/4))^(1/2); runs 2–3 take `later` steps."""
    later = SP.later_steps(steps) if later is None else later

    def run(G: Tensor, p: float) -> Tensor:
        X, norm, wide = _tall_unit(G)
        A = X.mH @ X
        c = frobenius_norms(A)
        A_hat = A / c + eps * torch.eye(A.shape[-1], dtype=A.dtype)
        _, R1 = SP._sqrt_pair(A_hat, steps)
        R2, _ = SP._sqrt_pair(R1, later)
        if p == 0.5:
            out = (X @ R2) * c.pow(-0.25)
        else:
            R3, _ = SP._sqrt_pair(R2, later)
            out = (X @ R2 @ R3) * c.pow(-0.375)
        return _restore(out, norm, p, wide)
    return run


def polar_route(eps: float, steps: int, polar_steps: int = SP.DEFAULT_POLAR_STEPS) -> Method:
    """Ψ_p = Q · H^p with Q = polar(X), H = QᴴX = V Σ Vᴴ (κ(H) = κ(G), not κ(G)²); roots of H/‖H‖_F + eps·I.

    Chunked like `spectral_power` (polar chunks on its own), so the two are timed alike.
    """
    def root(Q: Tensor, X: Tensor, p: float) -> Tensor:
        H = Q.mH @ X
        H = (H + H.mH) / 2
        h = frobenius_norms(H)
        Hp, _ = SP._sqrt_pair(H / h + eps * torch.eye(H.shape[-1], dtype=H.dtype), steps)  # (H/h)^(1/2)
        if p == 0.25:
            Hp, _ = SP._sqrt_pair(Hp, SP.later_steps(steps))
        return Q @ Hp * h.pow(p)

    def run(G: Tensor, p: float) -> Tensor:
        X, norm, wide = _tall_unit(G)
        Q = polar(X, steps=polar_steps, coefficients=SP.POLAR_COEFFICIENTS, compute_dtype=torch.float32)
        out = torch.cat([root(q, x, p) for q, x in zip(SP._chunks(Q), SP._chunks(X))])
        return _restore(out, norm, p, wide)
    return run


def shipped(**kwargs) -> Method:
    """`spectral_power` with these keywords (also `_spectral_power`'s: `later` steps of runs 2–3, `chunk_bytes`)."""
    return lambda G, p: SP._spectral_power(G, p, **kwargs)


def finite_on_low_rank(method: Method, real: torch.dtype = torch.float32, ps: tuple[float, ...] = (0.25, 0.5)) -> str:
    """"yes", or how many matrices of the rank-1 / rank-8, real / complex batches came out non-finite."""
    bad = total = 0
    for rank in (1, 8):
        for kind in ("real", "complex"):
            G = low_rank(rank, kind, real)
            for p in ps:
                out = method(G, p)
                bad += int((~torch.isfinite(torch.view_as_real(out) if out.is_complex() else out)).flatten(1).any(1).sum())
                total += G.shape[0]
    return "yes" if bad == 0 else f"**NaN {bad}/{total}**"


# ---------------------------------------------------------------------------------------------
# tables


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The rows as Markdown table lines (harness.markdown_table)."""
    return markdown_table(header, rows).splitlines()


def kappa_name(kappa: float) -> str:
    return f"1e{round(torch.log10(torch.tensor(kappa)).item())}"


def table_polar(suite: Suite) -> list[str]:
    methods = {f"polar, {s} steps": shipped(steps=s) for s in POLAR_STEPS_GRID}
    methods |= {"Gram X·A^(−1/2), eps 1e-6, 20 steps": gram_route(1e-6, 20),
                "Gram X·A^(−1/2), eps 1e-7, 25 steps": gram_route(1e-7, 25)}
    rows = [[kappa_name(k)] + [f"{suite.error(f, 0.0, k):.1e}" for f in methods.values()] for k in KAPPAS]
    return table(["κ"] + list(methods), rows)


def most_negative_gram_eigenvalue() -> float:
    """min eigenvalue of A/‖A‖_F, A = XᴴX the float32 Gram matrix, over the rank-1 / rank-8 inputs (float64 eigvalsh)."""
    lowest = 0.0
    for rank in (1, 8):
        for kind in ("real", "complex"):
            X = low_rank(rank, kind)
            A = X.mH @ X
            A = (A / frobenius_norms(A)).to(torch.complex128 if A.is_complex() else torch.float64)
            lowest = min(lowest, torch.linalg.eigvalsh((A + A.mH) / 2).min().item())
    return lowest


def table_grid(suite: Suite) -> list[str]:
    configs = [(eps, steps) for eps in EPS_GRID for steps in STEPS_GRID]
    rows = [[P_NAME[p], kappa_name(k)] + [f"{suite.error(shipped(eps=e, steps=s), p, k):.1e}" for e, s in configs]
            for p in (0.5, 0.25) for k in KAPPAS]
    rows.append(["1/4, 1/2", "rank 1, 8: finite"] + [finite_on_low_rank(shipped(eps=e, steps=s)) for e, s in configs])
    note = (f"\nMost negative eigenvalue of A/‖A‖_F (float32 Gram matrix) over the rank-1 / rank-8 inputs: "
            f"{most_negative_gram_eigenvalue():.1e}")
    return table(["p", "κ"] + [f"eps {e:.0e}, {s} steps" for e, s in configs], rows) + [note]


def table_cases(suite: Suite) -> list[str]:
    rows = [[kappa_name(k), f"{kind} {m}×{n}"] + [f"{suite.error(shipped(), p, k, (kind, m, n)):.1e}" for p in POWERS]
            for k in KAPPAS for kind, m, n in CASES]
    return table(["κ", "case"] + [f"p = {P_NAME[p]}" for p in POWERS], rows)


def table_design(suite: Suite) -> list[str]:
    eps, steps = SP.DEFAULT_EPS[torch.float32], SP.DEFAULT_STEPS[torch.float32]
    columns: list[tuple[str, Callable[[float, float], float]]] = [
        (f"default (runs 2–3: {SP.later_steps(steps)} steps)", lambda p, k: suite.error(shipped(), p, k)),
        (f"runs 2–3: {steps} steps", lambda p, k: suite.error(shipped(later=steps), p, k)),
        ("runs 2–3: 8 steps", lambda p, k: suite.error(shipped(later=8), p, k)),
        (f"inverse root first (runs 2–3: {SP.later_steps(steps)} steps)",
         lambda p, k: suite.error(inverse_first(eps, steps), p, k)),
        ("inverse root first, runs 2–3: 8 steps", lambda p, k: suite.error(inverse_first(eps, steps, later=8), p, k)),
        (f"Q·(QᴴX)^p, eps {eps:.0e}, {steps} steps", lambda p, k: suite.error(polar_route(eps, steps), p, k)),
    ]
    rows = [[P_NAME[p], kappa_name(k)] + [f"{f(p, k):.1e}" for _, f in columns] for p in (0.5, 0.25) for k in KAPPAS]
    rows.append(["1/4, 1/2", "rank 1, 8: finite", finite_on_low_rank(shipped()), "", "",
                 finite_on_low_rank(inverse_first(eps, steps)), "", finite_on_low_rank(polar_route(eps, steps))])
    return table(["p", "κ"] + [label for label, _ in columns], rows)


def table_convergence() -> list[str]:
    step_counts = (14, 16, 18, 20, 25)
    rows = []
    for side in (64, 256):
        for kappa in KAPPAS[:3]:
            G = sample(kappa, "real", side, side, batch=2)
            for p in (0.5, 0.25):
                ref = reference(G, p)
                rows.append([f"{side}×{side}", kappa_name(kappa), P_NAME[p]]
                            + [f"{rel_error(spectral_power(G, p, steps=s), ref):.1e}" for s in step_counts])
    return table(["real", "κ", "p"] + [f"{s} steps" for s in step_counts], rows)


def table_float64() -> list[str]:
    suite = Suite(torch.float64)
    configs = [(1e-6, 20), (1e-12, 40), (1e-14, 35), (1e-14, 45)]
    rows = [[P_NAME[p], kappa_name(k)] + [f"{suite.error(shipped(eps=e, steps=s), p, k):.1e}" for e, s in configs]
            for p in POWERS for k in KAPPAS]
    rows.append(["1/4, 1/2", "rank 1, 8: finite"]
                + [finite_on_low_rank(shipped(eps=e, steps=s), torch.float64) for e, s in configs])
    return table(["p", "κ"] + [f"eps {e:.0e}, {s} steps" for e, s in configs], rows)


def table_time(repeats: int) -> list[str]:
    g = torch.Generator().manual_seed(0)
    G = torch.randn(576, 64, 64, dtype=torch.complex64, generator=g)
    eps, steps = SP.DEFAULT_EPS[torch.float32], SP.DEFAULT_STEPS[torch.float32]
    fns: dict[str, Callable[[], object]] = {
        f"p = 0 (polar, {SP.DEFAULT_POLAR_STEPS} steps)": lambda: spectral_power(G, 0),
        f"p = 1/2, {steps} + {SP.later_steps(steps)} steps": lambda: spectral_power(G, 0.5),
        f"p = 1/4, {steps} + 2×{SP.later_steps(steps)} steps": lambda: spectral_power(G, 0.25),
        f"p = 1/2, 16 + {SP.later_steps(16)} steps": lambda: spectral_power(G, 0.5, steps=16),
        "p = 1/2, whole batch (no chunks)": lambda: SP._spectral_power(G, 0.5, chunk_bytes=None),
        f"p = 1/2, Q·(QᴴX)^p ({SP.DEFAULT_POLAR_STEPS} + {steps} steps)": lambda: polar_route(eps, steps)(G, 0.5),
        "torch.linalg.svd (complex64), for scale": lambda: torch.linalg.svd(G, full_matrices=False),
    }
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up
        fn()
    for r in range(repeats):
        names = list(fns)
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    rows = [[name, f"{1e3 * statistics.median(ts):.0f}", f"{1e3 * min(ts):.0f}–{1e3 * max(ts):.0f}"]
            for name, ts in times.items()]
    return table(["576 complex64 64×64", "ms per call (median)", "range"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{device_name()}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"float32 defaults eps {SP.DEFAULT_EPS[torch.float32]:g}, steps {SP.DEFAULT_STEPS[torch.float32]} "
          f"(runs 2–3: {SP.later_steps(SP.DEFAULT_STEPS[torch.float32])}), p = 0: {SP.DEFAULT_POLAR_STEPS} polar steps; "
          f"batch {BATCH} per case, worst matrix reported; load average {load_average()}")
    t_start = time.perf_counter()
    suite = Suite()
    sections = [
        ("p = 0: polar (Polar Express) vs the Gram route; worst over the 4 cases", lambda: table_polar(suite)),
        ("p = 1/2, 1/4: the Gram route over (eps, steps); worst over the 4 cases", lambda: table_grid(suite)),
        ("every case at the defaults", lambda: table_cases(suite)),
        ("design checks at the defaults; worst over the 4 cases", lambda: table_design(suite)),
        ("convergence by steps at the default eps (2 real matrices)", table_convergence),
        ("float64 compute (float64 / complex128 input); worst over the 4 cases", table_float64),
        ("time", lambda: table_time(args.repeats)),
    ]
    for k, (title, make) in enumerate(sections, 1):
        t0 = time.perf_counter()
        lines = make()
        print(f"\n### {k}. {title}  ({time.perf_counter() - t0:.0f} s)\n")
        print("\n".join(lines), flush=True)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; load average {load_average()}")


if __name__ == "__main__":
    main()
