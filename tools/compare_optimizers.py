"""Compare optimizers on one problem and model: a front-end to `python -m opspec.sweep` with the old flags.

    python -m tools.compare_optimizers darcy fno --optimizers adamw,muon,specmuon --epochs 15 --seeds 0

The flags become a sweep spec (docs/sweeps.md): `problem model` → config `configs/<problem>_<model>.yaml`
(or --config); --optimizers, --epochs, --seeds, --confirm-seeds, --lr-factors, --base-lr NAME=LR,
--extend-edges, --budgets, --budget-lr-factors and --epoch-cost NAME=RATIO keep their meaning, and
positional overrides apply to every run. The trials run one by one in this process (as before), or on
Ray Tune with --ray / --address. OUT (default checkpoints/compare_<problem>_<model>) is the sweep folder:
results/<trial>.json per finished run (a rerun trains only what is missing; an older OUT/results.jsonl
is adopted), summary.md/.csv, sweep.md, curves.png, and with several budgets budgets.md/.csv/.png and
budget_<b>/. The analysis is opspec.sweep's: LRs selected on validation error where the runs record it
(else on test, labelled), mean ± 95% Student-t interval, final training loss, and each matched budget
confirmed by a run at the nearest whole number of epochs (--no-confirm-budget to skip).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from opspec.core.errors import OpspecError
from opspec.optim import OPTIMIZERS
from opspec.sweep.executors import InlineExecutor
from opspec.sweep.records import ResultStore, TrialSpec, import_results_jsonl
from opspec.sweep.runner import run_sweep
from opspec.sweep.spec import SweepSpec, build_spec
from opspec.sweep.trial import TrialContext, run_trial

ROOT = Path(__file__).resolve().parent.parent


def train_one(ctx: TrialContext, trial: TrialSpec) -> dict[str, Any]:
    """One training run and its record (tests replace this with a synthetic error surface)."""
    return run_trial(ctx, trial)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The old command line of compare_optimizers, plus --ray/--address and --no-confirm-budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problem")
    parser.add_argument("model")
    parser.add_argument("--optimizers", default="adamw,muon", help=f"comma-separated, from {', '.join(OPTIMIZERS)}")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--lr-factors", default="0.3,1,3", help="the sweep: multiples of each optimizer's base LR")
    parser.add_argument("--extend-edges", type=int, default=0,
                        help="times to extend the sweep past an edge that holds the best LR")
    parser.add_argument("--confirm-seeds", default="", help="comma-separated seeds trained at each best LR only")
    parser.add_argument("--base-lr", action="append", default=[], metavar="NAME=LR", help="override a base LR")
    parser.add_argument("--budgets", default="1",
                        help="comma-separated fractions of --epochs, e.g. 1,0.5,0.25 (must include 1 when several)")
    parser.add_argument("--budget-lr-factors", default="0.5,1,2",
                        help="each smaller budget's sweep: multiples of the best LR at the next larger budget")
    parser.add_argument("--epoch-cost", action="append", default=[], metavar="NAME=RATIO",
                        help="seconds per epoch relative to AdamW measured elsewhere (e.g. on an idle machine); "
                             "default: the ratio of the runs' own medians")
    parser.add_argument("--no-confirm-budget", action="store_true", help="do not train the matched budgets")
    parser.add_argument("--log", default="none", help="train.log of every run (none, tensorboard, wandb, mlflow)")
    parser.add_argument("--ray", action="store_true", help="run the trials on an embedded local Ray (opspec[sweep])")
    parser.add_argument("--address", help="run the trials on this running Ray cluster")
    parser.add_argument("--config", help="default: configs/<problem>_<model>.yaml")
    parser.add_argument("--out", help="default: checkpoints/compare_<problem>_<model>")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. data.n_train=200")
    return parser.parse_intermixed_args(argv)


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    """The sweep spec the flags describe."""
    config = args.config or str(ROOT / "configs" / f"{args.problem}_{args.model}.yaml")
    if not Path(config).exists():
        raise OpspecError(f"{config}: no such config (pass --config)")
    budgets = [float(b) for b in args.budgets.split(",")]
    if len(budgets) > 1 and "adamw" not in args.optimizers.split(","):
        raise OpspecError(f"--budgets {args.budgets}: expected fractions in (0, 1], including 1 and with adamw among "
                          "the optimizers when several are given (the target is AdamW's full-budget error)")
    if any(not 0 < b <= 1 for b in budgets) or max(budgets) != 1:
        raise OpspecError(f"--budgets {args.budgets}: expected fractions in (0, 1], including 1")
    return build_spec({
        "name": f"compare_{args.problem}_{args.model}", "config": str(Path(config).resolve()),
        "overrides": args.overrides, "optimizers": args.optimizers, "lr_factors": args.lr_factors,
        "base_lr": [b for b in args.base_lr if b.partition("=")[0] in args.optimizers.split(",")],
        "extend_edges": args.extend_edges, "epochs": args.epochs, "budgets": budgets,
        "budget_lr_factors": args.budget_lr_factors, "seeds": args.seeds, "confirm_seeds": args.confirm_seeds,
        "epoch_cost": [c for c in args.epoch_cost if c.partition("=")[0] in args.optimizers.split(",")],
        "confirm_budget": not args.no_confirm_budget, "log": args.log,
    })


def main(argv: list[str] | None = None) -> int:
    """Build the spec from the flags, run it inline or on Ray, print the main table."""
    args = parse_args(argv)
    try:
        spec = spec_from_args(args)
    except OpspecError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    out = Path(args.out or ROOT / "checkpoints" / f"compare_{args.problem}_{args.model}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    import_results_jsonl(out / "results.jsonl", ResultStore(out))
    ctx = TrialContext(sweep_dir=str(out), config=spec.config, overrides=list(spec.overrides), variants=spec.variants,
                       experiment=spec.name,
                       log=spec.log, cwd=os.getcwd())
    if args.ray or args.address:
        from opspec.sweep.executors import RayExecutor

        executor: Any = RayExecutor(spec, ctx, args.address)
    else:
        executor = InlineExecutor(ctx, train=lambda c, t: train_one(c, t))
    command = "python -m tools.compare_optimizers " + " ".join(sys.argv[1:] if argv is None else argv)
    print(run_sweep(spec, out, executor, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
