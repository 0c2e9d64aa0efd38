"""`python -m opspec.sweep [SPEC.yaml] [flags] [overrides]`: an LR sweep / budget study as Ray Tune trials.

The spec (a YAML file, every key also a flag that overrides it) names the base config, the optimizers,
the LR grid of each, the seeds and the budgets (docs/sweeps.md). Trials run on an embedded local Ray
unless `--address` names a running cluster (`--inline`: in this process, without Ray). The sweep folder
(`--out`, default checkpoints/sweeps/<name>) holds each trial's run folder, its result, Ray Tune's
experiments and the report; starting the same command again (or `--out DIR` alone, which reads the
spec recorded there) resumes a killed sweep and trains no finished trial again.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from opspec.core.errors import cli_main
from opspec.sweep.analysis import write_report
from opspec.sweep.runner import records, run_sweep
from opspec.sweep.spec import SweepSpec, build_spec, load_spec_file
from opspec.sweep.trial import TrialContext

FLAGS = {  # flag → spec key; "append" flags take NAME=VALUE items
    "--name": "name", "--config": "config", "--optimizers": "optimizers", "--lr-factors": "lr_factors",
    "--extend-edges": "extend_edges", "--epochs": "epochs", "--budgets": "budgets",
    "--budget-lr-factors": "budget_lr_factors", "--seeds": "seeds", "--confirm-seeds": "confirm_seeds",
    "--target": "target", "--log": "log", "--cpus-per-trial": "cpus_per_trial", "--gpus-per-trial": "gpus_per_trial",
    "--threads-per-trial": "threads_per_trial", "--max-concurrent": "max_concurrent",
}
APPEND_FLAGS = {"--lrs": "lrs", "--base-lr": "base_lr", "--epoch-cost": "epoch_cost", "--variant": "variants"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: sweep flags, Ray's, and a spec file plus overrides as positionals."""
    parser = argparse.ArgumentParser(prog="python -m opspec.sweep", description=__doc__.splitlines()[0])
    for flag, key in FLAGS.items():
        parser.add_argument(flag, dest=key, help=f"spec key {key}")
    for flag, key in APPEND_FLAGS.items():
        parser.add_argument(flag, dest=key, action="append", metavar="NAME=VALUE", help=f"spec key {key} (repeatable)")
    parser.add_argument("--no-confirm-budget", dest="confirm_budget", action="store_const", const=False,
                        help="do not train the matched budgets")
    parser.add_argument("--out", help="the sweep folder (default checkpoints/sweeps/<name>)")
    parser.add_argument("--address", help="a running Ray cluster (e.g. auto, or HOST:6379); default: embedded local Ray")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the embedded local Ray (default: all)")
    parser.add_argument("--num-gpus", type=int, help="GPUs of the embedded local Ray (default: all)")
    parser.add_argument("--inline", action="store_true", help="run the trials in this process, one by one, without Ray")
    parser.add_argument("--report-only", action="store_true", help="train nothing; write the report of what finished")
    parser.add_argument("overrides", nargs="*", metavar="[SPEC.yaml] overrides",
                        help="a YAML sweep spec first (flags override its keys), then config overrides for every "
                             "trial, e.g. data.n_train=200")
    args = parser.parse_intermixed_args(argv)
    args.spec = args.overrides.pop(0) if args.overrides and "=" not in args.overrides[0] else None
    return args


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    """The spec file's keys, then the flags given, then the positional overrides appended."""
    recorded = Path(args.out) / "spec.yaml" if args.out else None
    if args.spec:
        values: dict[str, Any] = load_spec_file(args.spec)
    elif recorded is not None and recorded.is_file():  # `--out DIR` alone: the sweep as it was started
        values = load_spec_file(recorded)
    else:
        values = {}
    for key in [*FLAGS.values(), *APPEND_FLAGS.values(), "confirm_budget"]:
        value = getattr(args, key)
        if value is None:
            continue
        if key == "lrs":  # NAME=a,b,c
            value = {name: lrs for name, _, lrs in (item.partition("=") for item in value)}
        values[key] = value
    if args.overrides:
        values["overrides"] = [*values.get("overrides", []), *args.overrides]
    if values.get("config"):
        values["config"] = str(Path(values["config"]).resolve())
    return build_spec(values)


def check_configs(spec: SweepSpec) -> None:
    """Every optimizer's trial config loads (a bad key or value: one line, before any trial starts)."""
    from opspec.training.config import load_config

    for name in spec.optimizers:
        load_config(spec.config, [*spec.overrides, *spec.optimizer_overrides(name), f"train.epochs={spec.epochs}",
                                  f"train.log={spec.log}"])
    if spec.log != "none":
        from opspec.training.loggers import check_logger

        check_logger(spec.log)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    """Plan, run and report a sweep (or only report it)."""
    args = parse_args(argv)
    spec = spec_from_args(args)
    sweep_dir = Path(args.out or Path("checkpoints") / "sweeps" / spec.name).resolve()
    command = "python -m opspec.sweep " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.report_only:
        print(write_report(records(sweep_dir), spec, sweep_dir, command))
        return 0
    check_configs(spec)
    ctx = TrialContext(sweep_dir=str(sweep_dir), config=spec.config, overrides=list(spec.overrides),
                       variants=spec.variants, experiment=spec.name, log=spec.log, threads=spec.threads_per_trial,
                       cwd=os.getcwd())
    if args.inline:
        from opspec.sweep.executors import InlineExecutor

        executor = InlineExecutor(ctx)
    else:
        from opspec.sweep.executors import RayExecutor

        executor = RayExecutor(spec, ctx, args.address, args.num_cpus, args.num_gpus)
    print(run_sweep(spec, sweep_dir, executor, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
