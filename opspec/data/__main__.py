"""`python -m opspec.data generate|info`: make canonical data files and summarize them."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from opspec.data.canonical import CanonicalFile
from opspec.data.generate import PROBLEMS, generate_dataset
from opspec.errors import OpspecError, cli_main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m opspec.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a dataset with opspec's own solver")
    gen.add_argument("problem", choices=PROBLEMS)
    gen.add_argument("--resolution", type=int, default=129, help="grid points per axis (nodal, boundary included)")
    gen.add_argument("--n-train", type=int, default=500)
    gen.add_argument("--n-test", type=int, default=100)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--batch-size", type=int, default=32, help="samples per generator batch")
    gen.add_argument("--out", required=True, help="the canonical HDF5 file to write")
    gen.add_argument("--force", action="store_true", help="replace an existing file")
    info = sub.add_parser("info", help="summarize a canonical file (variables, shapes, attributes)")
    info.add_argument("file")
    return parser.parse_args(argv)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "info":
        print(CanonicalFile(args.file).describe())
        return 0
    if Path(args.out).exists() and not args.force:
        raise OpspecError(f"{args.out}: already exists (pass --force to replace it)")
    if args.resolution < 3:
        raise OpspecError(f"--resolution {args.resolution}: expected at least 3 grid points")
    if args.n_train < 1 or args.n_test < 1 or args.batch_size < 1:
        raise OpspecError("--n-train, --n-test and --batch-size must be at least 1")
    start = time.perf_counter()
    out = generate_dataset(
        args.problem, args.out, resolution=args.resolution, n_train=args.n_train, n_test=args.n_test,
        seed=args.seed, batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - start
    n = args.n_train + args.n_test
    print(f"wrote {out}: {n} samples at {args.resolution}^2 in {seconds:.1f} s ({n / seconds:.1f} samples/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
