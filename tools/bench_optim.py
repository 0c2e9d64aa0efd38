"""Optimizer-step benchmark; prints Markdown tables for docs/RESULTS.md.

Cases (each variant of a case is measured side by side in one run: warm-up, then repeats taken
round-robin with the variants' order rotated each round; medians reported):

1. Real 2-D parameters: opspec `Muon` vs `torch.optim.Muon` with identical settings (lr, momentum
   0.95, nesterov, weight decay, quintic coefficients, 5 steps, adjust_lr "original"), and a
   per-parameter float32 loop of the same math (opspec's `polar` called once per parameter),
   which separates the gain of batching from torch.optim.Muon's bf16 matmuls.
2. The four complex spectral weights (64, 64, 16, 9) of a neuraloperator FNO (hidden 64, modes
   16×16, 4 layers): opspec's grouped step (one polar call over 576 matrices) vs a Python loop
   over the Fourier modes doing the same math one 64×64 matrix at a time.
3. The whole optimizer step (`build_optimizer(model, name)`: Muon, SpecMuon with either top-k
   method, two members of the U Σ^p Vᴴ family, and torch AdamW for reference) as a fraction of a
   training step (forward + backward + step; batch 16, 64×64 input, MSE loss).
4. Achieved Newton–Schulz FLOP rate of `polar` on each case's stacked batch (real FLOPs of the
   path actually taken) over this device's large-matmul rate (4096² float32; bf16 too on CUDA and on CPUs with bf16 hardware).
5. Complex strategies for the (576, 64, 64) complex64 batch: time and error against a float64
   SVD reference (U p(Σ/‖G‖_F) Vᴴ, p the 5-step scalar iteration).

    python -m tools.bench_optim                      # CPU, one intra-op thread (~1-2 min)
    python -m tools.bench_optim --threads 0          # torch's default thread count
    python -m tools.bench_optim --device cuda --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import torch
from torch import Tensor, nn

from opspec.optim import Muon, build_optimizer
from opspec.optim.layouts import to_matrices
from opspec.optim.apply import lr_scale
from opspec.optim.polar import QUINTIC, coefficient_schedule, polar
from opspec.training.runtime import device_name, keep_freed_memory, load_average
from tools.harness import markdown_table, sync, time_interleaved

POLAR = sys.modules["opspec.optim.polar"]  # the module (the package re-exports the function `polar`)
LR, MOMENTUM, WD, STEPS = 0.02, 0.95, 0.01, 5
REAL_CASES = ((256, 32), (96, 64), (24, 512))  # (number of parameters, side)


# ---------------------------------------------------------------------------------------------
# timing


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each fn: `warmup` untimed rounds, then `repeats` timed rounds, round-robin
    (harness.time_interleaved: torch.utils.benchmark's clock, which synchronizes `device`)."""
    sync(device)
    return {name: m.times for name, m in time_interleaved(fns, repeats, warmup).items()}


def med_ms(ts: list[float]) -> float:
    return 1e3 * statistics.median(ts)


def spread(ts: list[float]) -> str:
    return f"{1e3 * min(ts):.1f}–{1e3 * max(ts):.1f}"


# ---------------------------------------------------------------------------------------------
# FLOPs of the path polar takes


def polar_flops(batch: int, m: int, n: int, is_complex: bool, compute_dtype: torch.dtype, steps: int = STEPS) -> float:
    """Real FLOPs of `steps` Newton–Schulz steps on (batch, m, n) along the path polar takes.

    Per step, rows ≤ cols (m ≤ n after the transpose): A = XXᴴ (m·m·n multiply–adds), A² (m³),
    B·X (m·m·n): 2(2m²n + m³) real FLOPs for a real matrix; 4x that for a complex one, on either
    complex path (native complex matmuls, or the row form times the real representation).
    """
    m, n = min(m, n), max(m, n)
    real = 2 * (2 * m * m * n + m**3)
    if is_complex:
        real *= 4
    return float(batch * steps * real)


def matmul_rate(device: torch.device, dtype: torch.dtype, repeats: int, size: int = 4096) -> float:
    """FLOP/s of one size × size matmul (the device's large-matmul rate)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    ts = interleaved({"mm": lambda: a @ b}, repeats, device)["mm"]
    return 2 * size**3 / statistics.median(ts)


# ---------------------------------------------------------------------------------------------
# case 1: real 2-D parameters


def _loop_muon_step(params: list[nn.Parameter], bufs: list[Tensor]) -> None:
    """torch.optim.Muon's per-parameter loop, but float32 and opspec's polar: batching's baseline."""
    with torch.no_grad():
        for p, buf in zip(params, bufs):
            buf.lerp_(p.grad, 1 - MOMENTUM)
            update = p.grad.lerp(buf, MOMENTUM)
            o = polar(update, steps=STEPS)
            p.mul_(1 - LR * WD)
            p.add_(o, alpha=-LR * lr_scale(*p.shape, "original"))


def case_real(device: torch.device, repeats: int, torch_subset: int | None,
              cases: tuple[tuple[int, int], ...] = REAL_CASES) -> list[str]:
    rows = []
    for count, side in cases:
        g = torch.Generator(device="cpu").manual_seed(side)
        init = [torch.randn(side, side, generator=g) / side**0.5 for _ in range(count)]
        grads = [torch.randn(side, side, generator=g) for _ in range(count)]

        def make(k: int | None = None) -> list[nn.Parameter]:
            ps = [nn.Parameter(w.clone().to(device)) for w in init[:k]]
            for p, gr in zip(ps, grads):
                p.grad = gr.to(device)
            return ps

        p_ops, p_torch, p_loop = make(), make(torch_subset if side >= 512 else None), make()
        opt_ops = Muon(p_ops, lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD, ns_steps=STEPS,
                       coefficients="quintic", adjust_lr="original")
        opt_torch = torch.optim.Muon(p_torch, lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD,
                                     ns_coefficients=QUINTIC, eps=1e-7, ns_steps=STEPS, adjust_lr_fn="original")
        bufs = [torch.zeros_like(p) for p in p_loop]
        # agreement of the first update (torch.optim.Muon runs bf16, so ~1e-2 is expected)
        before_ops = [p.detach().clone() for p in p_ops[: len(p_torch)]]
        before_torch = [p.detach().clone() for p in p_torch]
        opt_ops.step()
        opt_torch.step()
        d_ops = torch.cat([(p.detach() - b).flatten() for p, b in zip(p_ops, before_ops)])
        d_torch = torch.cat([(p.detach() - b).flatten() for p, b in zip(p_torch, before_torch)])
        agree = ((d_ops - d_torch).norm() / d_torch.norm()).item()
        reps = repeats if side < 512 or device.type == "cuda" else max(2, min(repeats, 3))
        ts = interleaved({"ops": opt_ops.step, "torch": opt_torch.step, "loop": lambda: _loop_muon_step(p_loop, bufs)},
                         reps, device, warmup=0)
        scale = count / len(p_torch)
        t_ops, t_torch, t_loop = med_ms(ts["ops"]), med_ms(ts["torch"]) * scale, med_ms(ts["loop"])
        note = "" if scale == 1 else f" (timed on {len(p_torch)} of {count}, ×{scale:g})"
        rows.append((f"{count} × ({side}×{side})", f"{t_ops:.1f}", f"{t_torch:.1f}{note}", f"{t_torch / t_ops:.1f}x",
                     f"{t_loop:.1f}", f"{t_loop / t_ops:.1f}x", f"{agree:.1e}", reps))
    return markdown_table(("parameters", "opspec Muon ms/step", "torch.optim.Muon ms/step", "torch / opspec",
                           "per-param fp32 loop ms", "loop / opspec", "first-update rel. diff", "repeats"), rows).splitlines()


# ---------------------------------------------------------------------------------------------
# case 2 and 3: the FNO


def make_fno(device: torch.device) -> nn.Module:
    from neuralop.models import FNO

    torch.manual_seed(0)
    return FNO(n_modes=(16, 16), in_channels=1, out_channels=1, hidden_channels=64, n_layers=4).to(device)


def spectral_weights(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.is_complex()]


def _per_mode_loop_step(weights: list[nn.Parameter], bufs: list[Tensor]) -> None:
    """The same math as opspec's grouped step, one (in × out) mode matrix at a time."""
    with torch.no_grad():
        for p, buf in zip(weights, bufs):
            for i in range(p.shape[2]):
                for j in range(p.shape[3]):
                    g, b = p.grad[:, :, i, j], buf[:, :, i, j]
                    b.lerp_(g, 1 - MOMENTUM)
                    o = polar(g.lerp(b, MOMENTUM), steps=STEPS)
                    w = p[:, :, i, j]
                    w.mul_(1 - LR * WD)
                    w.add_(o, alpha=-LR * lr_scale(p.shape[1], p.shape[0], "original"))  # (in, out, …): fan_out = out


def case_fno_spectral(device: torch.device, repeats: int,
                      build: Callable[[torch.device], nn.Module] = make_fno) -> list[str]:
    model_a, model_b = build(device), build(device)
    wa, wb = spectral_weights(model_a), spectral_weights(model_b)
    g = torch.Generator(device="cpu").manual_seed(1)
    for pa, pb in zip(wa, wb):
        gr = torch.randn(pa.shape, dtype=pa.dtype, generator=g).to(device)
        pa.grad, pb.grad = gr, gr.clone()
    opt = Muon(wa, lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD, ns_steps=STEPS, adjust_lr="original")
    bufs = [torch.zeros_like(p) for p in wb]
    before = [p.detach().clone() for p in wa]
    opt.step()
    _per_mode_loop_step(wb, bufs)
    da = torch.cat([(p.detach() - b).flatten() for p, b in zip(wa, before)])
    db = torch.cat([(p.detach() - b).flatten() for p, b in zip(wb, before)])
    agree = ((da - db).norm() / db.norm()).item()
    ts = interleaved({"batched": opt.step, "loop": lambda: _per_mode_loop_step(wb, bufs)}, repeats, device, warmup=0)
    n_mat = sum(to_matrices(p, "per_mode").shape[0] for p in wa)
    t_b, t_l = med_ms(ts["batched"]), med_ms(ts["loop"])
    grouped = f"opspec Muon, grouped ({len(wa)} weights {tuple(wa[0].shape)} → one polar of {n_mat} matrices)"
    loop = f"per-mode Python loop ({n_mat} polar calls of one 64×64 matrix)"
    return markdown_table(("variant", "ms/step (median)", "range", "loop / batched", "first-update rel. diff"),
                          [(grouped, f"{t_b:.1f}", spread(ts["batched"]), "1.0x", ""),
                           (loop, f"{t_l:.1f}", spread(ts["loop"]), f"{t_l / t_b:.1f}x", f"{agree:.1e}")]).splitlines()


def case_fno_training(device: torch.device, repeats: int,
                      build: Callable[[torch.device], nn.Module] = make_fno) -> list[str]:
    model = build(device)
    fixed_loss = torch.ones((), device=device)  # SpecMuon needs the loss: the gradients are already there
    optimizers = {
        "opspec Muon (build_optimizer)": build_optimizer(model, "muon", lr=1e-3, weight_decay=1e-4),
        "opspec SpecMuon, top-6 by warm subspace iteration": build_optimizer(model, "specmuon", lr=1e-3),
        "opspec SpecMuon, top-6 by batched SVD": build_optimizer(model, "specmuon", lr=1e-3, topk="svd"),
        "opspec momentum_p0.5 (U Σ^½ Vᴴ)": build_optimizer(model, "momentum_p0.5", lr=1e-3),
        "opspec adam_p0.25 (U Σ^¼ Vᴴ of Adam's direction)": build_optimizer(model, "adam_p0.25", lr=1e-3),
        "torch AdamW (reference)": build_optimizer(model, "adamw", lr=1e-3, weight_decay=1e-4),
    }
    steps = {name: (lambda opt=opt: opt.step(lambda: fixed_loss)) for name, opt in optimizers.items()}
    g = torch.Generator(device="cpu").manual_seed(2)
    x = torch.randn(16, 1, 64, 64, generator=g).to(device)
    y = torch.randn(16, 1, 64, 64, generator=g).to(device)
    snapshot = [p.detach().clone() for p in model.parameters()]

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=False)
        nn.functional.mse_loss(model(x), y).backward()

    def restore() -> None:  # every optimizer steps from the same weights, so none drifts the others
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), snapshot):
                p.copy_(p0)

    for _ in range(2):  # warm-up: allocations, FFT plans, optimizer state
        fwd_bwd()
        for step in steps.values():
            step()
            restore()
    sync(device)
    ts: dict[str, list[float]] = {"fb": [], **{name: [] for name in steps}}
    for _ in range(repeats):
        for name, fn in (("fb", fwd_bwd), *steps.items()):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            ts[name].append(time.perf_counter() - t0)
            restore()
    fb = med_ms(ts["fb"])
    rows = []
    for name in steps:
        st = med_ms(ts[name])
        shares = [s / (f + s) for f, s in zip(ts["fb"], ts[name])]
        rows.append((name, f"{fb:.0f}", f"{st:.1f}", f"{100 * st / (fb + st):.1f}%", f"{100 * min(shares):.1f}–{100 * max(shares):.1f}%"))
    return markdown_table(("optimizer", "forward+backward ms", "optimizer step ms", "step / (fwd+bwd+step)",
                           "range of that share"), rows).splitlines()


# ---------------------------------------------------------------------------------------------
# case 4: FLOP rates


def case_flop_rates(device: torch.device, repeats: int, cases: tuple[tuple[int, int], ...] = REAL_CASES) -> list[str]:
    f32_peak = matmul_rate(device, torch.float32, max(2, repeats // 2))
    fast_bf16 = device.type == "cuda" or POLAR.cpu_has_bf16_matmul()
    bf16_peak = matmul_rate(device, torch.bfloat16, max(2, repeats // 2)) if fast_bf16 else None
    g = torch.Generator(device="cpu").manual_seed(3)
    batches = {f"{c} × {s}×{s} float32": torch.randn(c, s, s, generator=g).to(device) for c, s in cases}
    batches["576 × 64×64 complex64 (FNO per-mode)"] = torch.randn(576, 64, 64, dtype=torch.complex64, generator=g).to(device)
    ts = interleaved({k: (lambda G=G: polar(G)) for k, G in batches.items()}, repeats, device)
    peak_head = "f32 peak" + (", bf16 peak" if bf16_peak else "")
    rows = []
    for k, G in batches.items():
        dtype = POLAR.default_compute_dtype(G)
        path = (POLAR.complex_path(dtype) if G.is_complex() else "real") + (
            ", chunked" if POLAR._chunk_size(G, dtype) < G.shape[0] else "")
        fl = polar_flops(G.shape[0], G.shape[1], G.shape[2], G.is_complex(), dtype)
        t = statistics.median(ts[k])
        share = f"{100 * fl / t / f32_peak:.0f}%" + (f", {100 * fl / t / bf16_peak:.0f}%" if bf16_peak else "")
        rows.append((k, path, str(dtype).removeprefix("torch."), f"{1e3 * t:.1f}", f"{fl / 1e9:.2f}", f"{fl / t / 1e9:.1f}", share))
    return [f"Large-matmul rate (4096² matmul): float32 {f32_peak / 1e9:.1f} GFLOP/s"
            + (f", bf16 {bf16_peak / 1e9:.1f} GFLOP/s" if bf16_peak else "") + "\n",
            *markdown_table(("polar batch", "path", "compute dtype", "ms (median)", "GFLOP", "GFLOP/s", f"share of {peak_head}"),
                            rows).splitlines()]


# ---------------------------------------------------------------------------------------------
# case 5: complex strategies


def _polar_full_embedding(G: Tensor, compute_dtype: torch.dtype) -> Tensor:
    """The bf16 complex path polar used before the row form (kept here to compare): the real
    iteration on the full embedding E(X) = [[Re X, −Im X], [Im X, Re X]] (2m × 2n), whole batch."""
    X = G / (torch.linalg.vector_norm(torch.view_as_real(G).flatten(1), dim=1).view(-1, 1, 1) + 1e-7)
    m, n = X.shape[-2:]
    Xr, Xi = X.real.to(compute_dtype), X.imag.to(compute_dtype)
    E = torch.cat((torch.cat((Xr, -Xi), dim=-1), torch.cat((Xi, Xr), dim=-1)), dim=-2)
    for a, b, c in coefficient_schedule("quintic", STEPS):
        A = torch.bmm(E, E.mT)
        E = torch.baddbmm(E, torch.baddbmm(A, A, A, beta=b, alpha=c), E, beta=a)
    E = E.float()
    return torch.complex((E[:, :m, :n] + E[:, m:, n:]) / 2, (E[:, m:, :n] - E[:, :m, n:]) / 2)


def _polar_3m_previous(G: Tensor, compute_dtype: torch.dtype) -> Tensor:
    """The complex path polar used before (kept here to compare): real and imaginary parts, every
    complex product by real products (Gauss's three for B·X), whole batch at once, wide input only."""
    X = G / (torch.linalg.vector_norm(torch.view_as_real(G).flatten(1), dim=1).view(-1, 1, 1) + 1e-7)
    Xr, Xi = X.real.to(compute_dtype), X.imag.to(compute_dtype)
    for a, b, c in coefficient_schedule("quintic", STEPS):
        Y = torch.cat((Xr, Xi), dim=-1)
        Ar = torch.bmm(Y, Y.mT)
        R = torch.bmm(Xr, Xi.mT)
        Ai = R.mT - R
        A2r = torch.bmm(torch.cat((Ar, Ai), dim=-1), torch.cat((Ar, -Ai), dim=-2))
        S = torch.bmm(Ar, Ai)
        A2i = S - S.mT
        Br, Bi = b * Ar + c * A2r, b * Ai + c * A2i
        T1, T2, T3 = torch.bmm(Br, Xr), torch.bmm(Bi, Xi), torch.bmm(Br + Bi, Xr + Xi)
        Xr, Xi = a * Xr + (T1 - T2), a * Xi + (T3 - T1 - T2)
    return torch.complex(Xr.float(), Xi.float())


def _polar_rowform_hermitian(G: Tensor, compute_dtype: torch.dtype) -> Tensor:
    """The row form with the Hermitian products A = X Xᴴ and A² = A Aᴴ taken in three real products
    each instead of four (Re = Z Zᵀ, Im = S − Sᵀ with S = Im·Reᵀ), B·X as in polar; in CPU chunks
    like polar. Not used by polar: kept here to show why (the difference S − Sᵀ cancels in bf16)."""
    X = G / POLAR.frobenius_norms(G)
    n = X.shape[-1]

    def gram(Z: Tensor, k: int) -> Tensor:
        S = torch.bmm(Z[..., k:], Z[..., :k].mT)
        return torch.cat((torch.bmm(Z, Z.mT), S - S.mT), dim=-1)

    def iterate(Z: Tensor) -> Tensor:
        m = Z.shape[-2]
        RX = Z.new_empty(Z.shape[0], 2 * m, 2 * n)
        for a, b, c in coefficient_schedule("quintic", STEPS):
            POLAR._real_rep(Z, n, RX)
            rA = gram(Z, n)
            Z = torch.baddbmm(Z, gram(rA, m).mul_(c).add_(rA, alpha=b), RX, beta=a)
        return Z.float()

    chunk = POLAR._chunk_size(X, compute_dtype)
    Z = torch.cat([iterate(torch.cat((x.real, x.imag), dim=-1).to(compute_dtype)) for x in X.split(chunk)])
    return torch.complex(Z[..., :n], Z[..., n:])


def _svd_reference(G: Tensor) -> Tensor:
    U, S, Vh = torch.linalg.svd(G.to(torch.complex128), full_matrices=False)
    s = S / (S.norm(dim=-1, keepdim=True) + 1e-7)
    for a, b, c in coefficient_schedule("quintic", STEPS):
        s = a * s + b * s**3 + c * s**5
    return (U * s.unsqueeze(-2).to(U.dtype)) @ Vh


def case_complex_strategies(device: torch.device, repeats: int) -> list[str]:
    g = torch.Generator(device="cpu").manual_seed(4)
    G = torch.randn(576, 64, 64, dtype=torch.complex64, generator=g).to(device)
    small = G[:32]  # bf16 on a CPU without bf16 units is ~30-60x slower than float32: there, accuracy on 32 only
    ref_full, ref_small = _svd_reference(G), _svd_reference(small)

    def err(X: Tensor, ref: Tensor) -> float:
        X = X.to(torch.complex128)
        return ((X - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).max().item()

    def no_chunks(dtype: torch.dtype, path: str) -> Callable[[Tensor], Tensor]:
        return lambda G: POLAR._polar(G, STEPS, "quintic", 1e-7, dtype, path, chunk_bytes=None)

    f32, bf16 = torch.float32, torch.bfloat16
    variants: dict[str, tuple[Callable[[Tensor], Tensor], torch.dtype]] = {
        "native complex64 matmuls": (lambda G: POLAR._polar(G, STEPS, "quintic", 1e-7, f32, "native"), f32),
        "native, whole batch (no CPU chunks)": (no_chunks(f32, "native"), f32),
        "row form × real representation": (lambda G: POLAR._polar(G, STEPS, "quintic", 1e-7, f32, "rowform"), f32),
        "re/im parts, 3 real products (older)": (lambda G: _polar_3m_previous(G, f32), f32),
        "row form × real representation, bf16": (lambda G: POLAR._polar(G, STEPS, "quintic", 1e-7, bf16, "rowform"), bf16),
        "row form, bf16, whole batch (no CPU chunks)": (no_chunks(bf16, "rowform"), bf16),
        "row form, Hermitian A and A² in 3 products each, bf16 (not used)": (lambda G: _polar_rowform_hermitian(G, bf16), bf16),
        "full real embedding [[Re, −Im], [Im, Re]], bf16 (previous)": (lambda G: _polar_full_embedding(G, bf16), bf16),
        "re/im parts, 3 real products, bf16 (older)": (lambda G: _polar_3m_previous(G, bf16), bf16),
    }
    fast_bf16 = device.type == "cuda" or POLAR.cpu_has_bf16_matmul()
    timed = {k: v for k, v in variants.items() if v[1] == f32 or fast_bf16}
    ts = interleaved({k: (lambda f=f: f(G)) for k, (f, _) in timed.items()}, repeats, device)
    default = POLAR.complex_path(POLAR.default_compute_dtype(G))
    base = med_ms(ts["native complex64 matmuls"])
    rows = []
    for k, (f, dt) in variants.items():
        if k in ts:
            t = med_ms(ts[k])
            e = err(f(G), ref_full)
            rows.append((k, str(dt).removeprefix("torch."), f"{t:.1f}", f"{t / base:.2f}", f"{e:.1e}"))
        else:
            e = err(f(small), ref_small)
            rows.append((k, str(dt).removeprefix("torch."), "not timed on CPU", "", f"{e:.1e} (32 matrices)"))
    return [f"polar's default here: {default} ({POLAR.default_compute_dtype(G)}); CPU chunking "
            f"{'on' if POLAR._chunk_size(G, POLAR.default_compute_dtype(G)) < G.shape[0] else 'off'} at {torch.get_num_threads()} thread(s)\n",
            *markdown_table(("strategy", "compute", "ms (576×64×64, median)", "time / native", "max rel. error vs float64 SVD"),
                            rows).splitlines()]


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per case (after warm-up)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads; 0: torch's default (default: 1 on CPU, see the notes; torch's on CUDA)")
    parser.add_argument("--cases", default="1,2,3,4,5", help="comma-separated case numbers")
    parser.add_argument("--torch-muon-subset", type=int, default=None,
                        help="time torch.optim.Muon on this many of the 512×512 parameters and scale up "
                             "(default: 1 on CPU, where its bf16 matmuls take seconds per parameter; all elsewhere)")
    parser.add_argument("--no-keep-freed-memory", action="store_true",
                        help="skip the glibc malloc setting opspec's trainer applies (runtime.keep_freed_memory)")
    args = parser.parse_args()
    device = torch.device(args.device)
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    kept = False if args.no_keep_freed_memory else keep_freed_memory()
    cases = {int(c) for c in args.cases.split(",")}
    subset = args.torch_muon_subset if args.torch_muon_subset is not None else (1 if device.type == "cpu" else None)

    print(f"device: {device_name(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"repeats {args.repeats}; keep_freed_memory {kept}; load average at start {load_average()}")
    t_start = time.perf_counter()
    sections: list[tuple[int, str, Callable[[], list[str]]]] = [
        (1, "Real 2-D parameters: opspec Muon vs torch.optim.Muon (lr 0.02, momentum 0.95, nesterov, wd 0.01, quintic × 5, adjust_lr original)",
         lambda: case_real(device, args.repeats, subset)),
        (2, "FNO spectral weights: grouped batched step vs per-mode loop", lambda: case_fno_spectral(device, args.repeats)),
        (3, "Optimizer step as a share of an FNO training step (batch 16, 64×64, MSE)", lambda: case_fno_training(device, args.repeats)),
        (4, "Newton–Schulz FLOP rate of polar (5 quintic steps) vs the large-matmul rate", lambda: case_flop_rates(device, args.repeats)),
        (5, "Complex strategies, 576 × 64×64 complex64, 5 quintic steps", lambda: case_complex_strategies(device, args.repeats)),
    ]
    for k, title, fn in sections:
        if k in cases:
            t0 = time.perf_counter()
            lines = fn()
            print(f"\n### {k}. {title}  ({time.perf_counter() - t0:.0f} s)\n")
            print("\n".join(lines), flush=True)
    notes = [
        f"Total {time.perf_counter() - t_start:.0f} s; load average at end {load_average()}.",
        "Medians over interleaved repeats; compare within a table, not across runs.",
    ]
    if device.type == "cpu":
        notes += [
            "torch.optim.Muon casts to bf16 for its Newton–Schulz matmuls; on a CPU without bf16 units (AVX2 only) those run"
            " ~30-60x slower than float32, so most of its gap here is bf16, not batching (see the per-parameter fp32 loop column).",
            "On a CPU the Newton–Schulz work is compute-bound either way, so batching over modes saves only per-call overhead:"
            " the loop/batched ratio of case 2 stays small; on a GPU, where one 64×64 polar is launch-bound, it is large.",
            "The CPU default is one intra-op thread: with several threads on a CPU shared with another busy process (see the"
            " load average), every parallel op can wait out a scheduler time slice (measured: ~10 ms per op on a 2-core"
            " machine beside a training job), which swamps small matmuls; --threads 0 uses torch's default.",
        ]
    print("\nNotes:\n" + "\n".join(f"- {n}" for n in notes))


if __name__ == "__main__":
    main()
