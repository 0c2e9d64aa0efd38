"""`python -m opspec.data generate|info|convert|download|list`: make, convert, fetch and summarize canonical data files."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from opspec.data.multifile import open_data
from opspec.data.convert import add_convert_parser
from opspec.data.download import add_download_parsers
from opspec.data.rechunk import add_rechunk_parser
from opspec.data.generate import OPTIONS, PROBLEMS, generate_dataset
from opspec.data.outputs import check_output_file
from opspec.core.errors import OpspecError, cli_main


# Sized to finish in a few minutes on a 2-core CPU; the papers' sizes are flags away.
GENERATE_DEFAULTS = {
    "darcy": {"resolution": 129, "n_train": 500, "n_test": 100},
    "burgers": {"resolution": 1024, "n_train": 1000, "n_test": 200},
    "navier_stokes": {"resolution": 64, "n_train": 200, "n_test": 50},
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m opspec.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a dataset with opspec's own solver",
                         description="Defaults per problem: " + "; ".join(
                             f"{p}: " + ", ".join(f"{k}={v}" for k, v in d.items()) for p, d in GENERATE_DEFAULTS.items()))
    gen.add_argument("problem", choices=PROBLEMS)
    gen.add_argument("--resolution", type=int, help="grid points per axis (darcy: nodal, boundary included; burgers, "
                     "navier_stokes: periodic)")
    gen.add_argument("--n-train", type=int)
    gen.add_argument("--n-test", type=int)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--batch-size", type=int, help="samples per generator batch (default: darcy 32, burgers 100, "
                     "navier_stokes 20)")
    gen.add_argument("--viscosity", type=float, help="burgers (default 0.1), navier_stokes (default 1e-3)")
    gen.add_argument("--time", type=float, help="burgers: the final time T of the map u(., 0) -> u(., T) (default 1)")
    gen.add_argument("--time-step", type=float, help="largest solver step (burgers default 1e-3; navier_stokes "
                     "default 0.64 / solve resolution; the paper's NS data used 1e-4 at 256^2)")
    gen.add_argument("--t-in", type=int, help="navier_stokes: input snapshots at t = 1..t_in (default 10)")
    gen.add_argument("--t-out", type=int, help="navier_stokes: output snapshots at t = t_in+1..t_in+t_out (default 10)")
    gen.add_argument("--solve-resolution", type=int, help="navier_stokes: solve on this grid, a multiple of "
                     "--resolution, and store strided (the paper: 256 stored at 64)")
    gen.add_argument("--device", help="burgers, navier_stokes: torch device of the solver (default cpu)")
    gen.add_argument("--out", required=True, help="the canonical HDF5 file to write")
    gen.add_argument("--force", action="store_true", help="replace an existing file")
    info = sub.add_parser("info", help="summarize a canonical file, folder or glob (variables, shapes, attributes)")
    info.add_argument("file")
    add_convert_parser(sub)
    add_download_parsers(sub)
    add_rechunk_parser(sub)
    return parser.parse_args(argv)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "info":
        print(open_data(args.file).describe())
        return 0
    if args.command != "generate":  # convert, download, list
        return args.func(args)
    check_output_file(args.out, force=args.force)
    settings = {**GENERATE_DEFAULTS[args.problem],
                **{k: getattr(args, k) for k in ("resolution", "n_train", "n_test") if getattr(args, k) is not None}}
    minimum = 3 if args.problem == "darcy" else 4
    if settings["resolution"] < minimum:
        raise OpspecError(f"--resolution {settings['resolution']}: expected at least {minimum} grid points")
    if settings["n_train"] < 1 or settings["n_test"] < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise OpspecError("--n-train, --n-test and --batch-size must be at least 1")
    options = {k: getattr(args, k) for k in OPTIONS[args.problem]}
    foreign = [k for k in ("viscosity", "time", "time_step", "t_in", "t_out", "solve_resolution", "device")
               if k not in options and getattr(args, k) is not None]
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise OpspecError(f"{flags}: not an option of {args.problem} (it takes {OPTIONS[args.problem] or 'none'})")
    start = time.perf_counter()
    try:
        out = generate_dataset(args.problem, args.out, seed=args.seed, batch_size=args.batch_size,
                               progress=sys.stderr.isatty(), **settings, **options)
    except ValueError as err:  # the generators validate their arguments before writing anything
        raise OpspecError(f"generate {args.problem}: {err}") from None
    seconds = time.perf_counter() - start
    n = settings["n_train"] + settings["n_test"]
    grid = "x".join([str(settings["resolution"])] * (1 if args.problem == "burgers" else 2))
    print(f"wrote {out}: {n} samples at {grid} in {seconds:.1f} s ({n / seconds:.2f} samples/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
