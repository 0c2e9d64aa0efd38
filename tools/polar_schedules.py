"""Polar accuracy of Newton–Schulz schedules on each setting's own Muon directions, against float64 SVD (issue 23).

    python -m tools.polar_schedules --settings darcy_fno,darcy_deeponet --schedules quintic:5,quintic:4,polar_express:4

Fewer Newton–Schulz steps cut the map's matmuls in proportion (3 products per step), but change
the update and so the training numbers: this tool measures, before any such change is made, how
far each schedule's result is from the exact polar factor U Vᴴ on the matrices Muon really maps.
For each setting the model is built as `profile_step` builds it and trained with Muon for a few
steps on random batches of the config's shape; the momentum directions of the last step, bucketed as
the step buckets them, are mapped by each schedule (float32, as on this CPU) and compared with
float64 SVD: O's gain along each of the input's singular directions (1 for the exact U Vᴴ), over the
singular values the documented bands cover (σ ≥ lo·‖M‖_F; docs/optim.md), as its RMS distance to 1 and range.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

import torch

from opspec.optim.directions import momentum_direction
from opspec.optim.layouts import to_matrices
from opspec.optim.polar import polar
from tools.harness import markdown_table
from tools.profile_step import SETTINGS, build_setting, train_step


def directions(setting: str, steps: int, overrides: list[str]) -> dict[tuple[int, ...], torch.Tensor]:
    """The stacked Nesterov momentum directions Muon maps at step `steps`, by matrix shape and dtype."""
    net, optimizer, a, u = build_setting(setting, "muon", overrides)
    for _ in range(steps - 1):
        train_step(net, optimizer, a, u)
    optimizer.zero_grad(set_to_none=True)
    from opspec.training.metrics import relative_l2

    relative_l2(net(a), u).mean().backward()
    stacks: dict[Any, list[torch.Tensor]] = defaultdict(list)
    for group in optimizer.param_groups:
        if not group["use_spectral"]:
            continue
        params = [p for p in group["params"] if p.grad is not None]
        states = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in params]
        for p, d in zip(params, momentum_direction([p.grad for p in params], states, group["momentum"], group["nesterov"])):
            M = to_matrices(d, optimizer.plan_of(p, group).layout)
            stacks[(tuple(M.shape[-2:]), M.dtype)].append(M)
    return {key: torch.cat(ms) for key, ms in stacks.items()}


def accuracy(M: torch.Tensor, coefficients: str, steps: int, lo: float) -> tuple[float, float, float]:
    """Gains of the result along the input's own singular directions, g_i = Re(u_iᴴ O v_i) (exactly 1 for
    U Vᴴ), over the singular values σ_i ≥ lo·‖M‖_F (the documented bands' range; below it the input is
    numerical noise): (RMS of g − 1, smallest g, largest g)."""
    wide = M.to(torch.complex128 if M.is_complex() else torch.float64)
    U, S, Vh = torch.linalg.svd(wide, full_matrices=False)
    O = polar(M, steps=steps, coefficients=coefficients, compute_dtype=torch.float32).to(wide.dtype)
    gains = torch.diagonal(U.mH @ O @ Vh.mH, dim1=-2, dim2=-1).real
    kept = gains[S >= lo * torch.linalg.norm(wide, dim=(-2, -1), keepdim=True)[..., 0]]
    return float((kept - 1).pow(2).mean().sqrt()), float(kept.min()), float(kept.max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=SETTINGS, help="config names under configs/")
    parser.add_argument("--schedules", default="quintic:5,quintic:4,quintic:3,polar_express:5,polar_express:4,polar_express:3",
                        help="coefficient set:steps, comma-separated (the first is the reference)")
    parser.add_argument("--steps", type=int, default=5, help="training steps before the directions are taken")
    parser.add_argument("--lo", type=float, default=1e-3, help="singular values below lo·‖M‖_F are left out")
    parser.add_argument("overrides", nargs="*", help="config overrides for every setting")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    schedules = [(name, int(n)) for name, _, n in (s.partition(":") for s in args.schedules.split(","))]
    for setting in args.settings.split(","):
        rows = []
        for (shape, dtype), M in directions(setting, args.steps, args.overrides).items():
            for name, n in schedules:
                err, lo, hi = accuracy(M, name, n, args.lo)
                kind = "complex" if dtype.is_complex else "real"
                rows.append((f"{M.shape[0]} × {shape[0]}×{shape[1]} {kind}", f"{name} × {n}", f"{err:.3f}", f"{lo:.3f}–{hi:.3f}"))
        print(f"**{setting}** (directions at step {args.steps}; singular values ≥ {args.lo:g}·‖M‖_F)\n")
        print(markdown_table(("matrices", "schedule", "RMS of gain − 1", "gain min–max"), rows) + "\n",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
