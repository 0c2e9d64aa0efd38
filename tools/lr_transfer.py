"""Does the best learning rate transfer across model widths and training resolutions? (issue 17 §3)

    python -m tools.lr_transfer --variants w16,w32,w64,r17,r33,r65 --epochs 8

Each variant is the Darcy FNO of `configs/darcy_fno.yaml` with one change: `wN` sets the width
(hidden channels) to N at the 33 × 33 training grid, `rN` trains at N × N with width 32 (`w32` and
`r33` are the same model and share their runs). For each variant `tools/compare_optimizers.py` sweeps
every optimizer's LR on one grid of factors (the same LRs for every variant, so "one sweep step" means
the same thing everywhere), extending past an edge that holds the best: one opspec.sweep per variant,
trained in this process (or on Ray with --ray / --address), each LR chosen by the sweep's selection
(validation error where the runs record it). Each variant's sweep folder is OUT/<variant>/ (finished
runs are never retrained), so variants can be trained by separate processes and summarised by a last call.
Writes OUT/transfer.md (best LR per variant and optimizer, and how far it moves, in sweep steps) and
OUT/transfer.png (error against LR per variant, each curve divided by its own minimum).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from opspec.sweep.executors import InlineExecutor  # noqa: E402
from tools.harness import save_figure  # noqa: E402
from opspec.sweep.records import ResultStore, TrialSpec, import_results_jsonl  # noqa: E402
from opspec.sweep.runner import records, run_sweep  # noqa: E402
from opspec.sweep.selection import score, selection_split  # noqa: E402
from opspec.sweep.spec import build_spec  # noqa: E402
from opspec.sweep.trial import TrialContext, run_trial  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASE_WIDTH, BASE_RESOLUTION = 32, 33


def train_one(ctx: TrialContext, trial: TrialSpec) -> dict[str, Any]:
    """One training run and its record (tests replace this with a synthetic error surface)."""
    return run_trial(ctx, trial)


def variant_overrides(variant: str) -> tuple[str, list[str]]:
    """The cache folder name and config overrides of `wN` (width N) or `rN` (training resolution N)."""
    kind, value = variant[:1], variant[1:]
    if kind not in ("w", "r") or not value.isdigit():
        raise SystemExit(f"--variants: {variant!r} is not wN (a width) or rN (a training resolution)")
    width = int(value) if kind == "w" else BASE_WIDTH
    resolution = int(value) if kind == "r" else BASE_RESOLUTION
    evals = sorted({resolution, 129})
    return (f"w{width}_r{resolution}",
            [f"model.hidden_channels={width}", f"data.train_resolution={resolution}",
             f"data.eval_resolutions=[{','.join(map(str, evals))}]"])


def steps_apart(lrs: list[float], step: float) -> float:
    """How many sweep steps separate the smallest and largest of `lrs`."""
    return math.log(max(lrs) / min(lrs)) / math.log(step)


def summarize(sweeps: dict[str, dict[str, dict[float, float]]], optimizers: list[str], step: float, out: Path,
              command: str) -> str:
    """Best LR per (variant, optimizer) from `sweeps[variant][optimizer][lr] = final error`, and how far it
    moves across the widths (at 33²) and across the training resolutions (at width 32)."""
    variants = list(sweeps)
    groups = {"widths": [v for v in variants if variant_overrides(v)[0].endswith(f"_r{BASE_RESOLUTION}")],
              "resolutions": [v for v in variants if variant_overrides(v)[0].startswith(f"w{BASE_WIDTH}_")]}
    header = ["optimizer", *variants, *[f"moves across {g} (sweep steps)" for g in groups]]
    rows = []
    for name in optimizers:
        best = {v: min(sweeps[v][name], key=sweeps[v][name].get) for v in variants if sweeps[v].get(name)}
        moves = []
        for members in groups.values():
            found = [best[v] for v in members if v in best]
            moves.append(f"{steps_apart(found, step):.1f}" if len(found) > 1 else "")
        rows.append([name, *[f"{best[v]:g}" if v in best else "" for v in variants], *moves])
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    detail = []
    for v in variants:
        for name in optimizers:
            if sweeps[v].get(name):
                pts = ", ".join(f"{lr:g}: {err:.4f}" for lr, err in sorted(sweeps[v][name].items()))
                detail.append(f"- {v}, {name}: {pts}")
    plot(sweeps, optimizers, out / "transfer.png")
    text = (f"Command: `{command}`\n\nBest LR (lowest final relative L2 at the training resolution) per variant; "
            f"one sweep step is ×{step:g}, so a best LR that stays within one step moves by ≤ 1.0.\n\n"
            + "\n".join(table) + "\n\nFinal relative L2 at the training resolution, per LR:\n\n"
            + "\n".join(detail) + "\n")
    (out / "transfer.md").write_text(text)
    return text


def plot(sweeps: dict[str, dict[str, dict[float, float]]], optimizers: list[str], path: Path) -> None:
    """One panel per optimizer: error / the variant's best error against LR, one line per variant."""
    fig, axes = plt.subplots(1, len(optimizers), figsize=(5.5 * len(optimizers), 4.2), squeeze=False)
    for ax, name in zip(axes[0], optimizers):
        for v, per_opt in sweeps.items():
            pts = sorted(per_opt.get(name, {}).items())
            if pts:
                low = min(e for _, e in pts)
                ax.plot([lr for lr, _ in pts], [e / low for _, e in pts], marker="o", label=v)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final error / the variant's best")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def read_sweep(folder: Path, epochs: int, seed: int) -> dict[str, dict[float, float]]:
    """optimizer → lr → the selection score (validation error, or test for runs without it) of a sweep folder."""
    import_results_jsonl(folder / "results.jsonl", ResultStore(folder))  # a cache written before the sweep
    found = [r for r in records(folder) if r["epochs"] == epochs and r["seed"] == seed]
    split = selection_split(found)
    result: dict[str, dict[float, list[float]]] = {}
    for r in found:
        result.setdefault(r["optimizer"], {}).setdefault(r["lr"], []).append(score(r, split))
    return {o: {lr: statistics.mean(v) for lr, v in per.items()} for o, per in result.items()}


def sweep_variant(folder: Path, overrides: list[str], args: argparse.Namespace) -> None:
    """One variant's LR sweep (opspec.sweep): every optimizer on the shared grid, edges extended."""
    spec = build_spec({"name": f"lr_transfer_{folder.name}", "config": str(ROOT / "configs" / "darcy_fno.yaml"),
                       "overrides": overrides, "optimizers": args.optimizers, "epochs": args.epochs,
                       "seeds": [args.seed], "lr_factors": args.lr_factors,
                       "base_lr": [b for b in args.base_lr if b.partition("=")[0] in args.optimizers.split(",")],
                       "extend_edges": args.extend_edges, "log": "none"})
    import_results_jsonl(folder / "results.jsonl", ResultStore(folder))
    ctx = TrialContext(sweep_dir=str(folder), config=spec.config, overrides=overrides, experiment=spec.name,
                       log=spec.log, cwd=os.getcwd())
    if args.ray or args.address:
        from opspec.sweep.executors import RayExecutor

        executor: Any = RayExecutor(spec, ctx, args.address)
    else:
        executor = InlineExecutor(ctx, train=lambda c, t: train_one(c, t))
    run_sweep(spec, folder, executor, "python -m tools.lr_transfer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="w16,w32,w64,r17,r33,r65",
                        help="wN: width N at 33², rN: training resolution N at width 32")
    parser.add_argument("--optimizers", default="adamw,muon")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr-factors", default="0.5,1,2", help="one grid for every variant")
    parser.add_argument("--base-lr", action="append", default=["adamw=9e-3", "muon=3e-2"], metavar="NAME=LR")
    parser.add_argument("--extend-edges", type=int, default=1)
    parser.add_argument("--summarize-only", action="store_true", help="train nothing; tabulate what is cached")
    parser.add_argument("--ray", action="store_true", help="run the trials on an embedded local Ray (opspec[sweep])")
    parser.add_argument("--address", help="run the trials on this running Ray cluster")
    parser.add_argument("--out", default=str(ROOT / "checkpoints" / "lr_transfer"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    factors = sorted(float(f) for f in args.lr_factors.split(","))
    step = factors[1] / factors[0] if len(factors) > 1 else 2.0
    sweeps: dict[str, dict[str, dict[float, float]]] = {}
    for variant in args.variants.split(","):
        folder, overrides = variant_overrides(variant)
        if not args.summarize_only:
            sweep_variant(out / folder, overrides, args)
        sweeps[variant] = read_sweep(out / folder, args.epochs, args.seed)
    command = "python -m tools.lr_transfer " + " ".join(sys.argv[1:] if argv is None else argv)
    print(summarize(sweeps, args.optimizers.split(","), step, out, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
