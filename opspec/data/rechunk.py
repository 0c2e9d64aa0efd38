"""`python -m opspec.data rechunk SRC --out DST`: rewrite a canonical file (or an older one, chunked one
sample per chunk) with the current chunk layout, block by block, so out-of-core reads are fast."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from opspec.data.canonical import READ_BYTES, SPACE_DIMS, CanonicalFile, CanonicalWriter, _from_attr
from opspec.core.errors import OpspecError
from opspec.data.outputs import check_space

SKIP_ROOT_ATTRS = ("format", "format_version", "problem", "grid", "splits")


def rechunk(src: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> Path:
    """Copy every split of `src` into a new canonical file at `out` written with CanonicalWriter's chunks."""
    out = Path(out)
    if out.exists() and not force:
        raise OpspecError(f"{out}: already exists (pass --force to replace it)")
    if Path(src).resolve() == out.resolve():
        raise OpspecError(f"{out}: the output must be a new file, not the input")
    with CanonicalFile(src) as f:
        check_space(out, sum(f.n_samples(split) * f.sample_bytes(split) for split in f.splits))
        h5 = f._handle()
        first = h5[f.splits[0]]
        coords = {d: np.asarray(first[d][()]) if d in first else np.arange(s, dtype=np.float64)
                  for d, s in zip(f.space_dims, f.grid_shape)}
        attrs = {k: v for k, v in f.attrs.items() if k not in SKIP_ROOT_ATTRS and not k.startswith("_")}
        with CanonicalWriter(out, problem=f.problem, coords=coords, grid=f.grid, attrs=attrs, splits=f.splits,
                             dtype=str(first["u"].dtype)) as writer:
            for split in f.splits:
                group = h5[split]
                extra = [d for var in ("a", "u") for d in f.dims[split][var][1:] if d not in SPACE_DIMS]
                extra = list(dict.fromkeys(extra))
                size = {d: n for var in ("a", "u") for d, n in zip(f.dims[split][var], f.shapes[split][var])}
                writer.add_split(
                    split, f.n_samples(split),
                    extra_dims={d: size[d] for d in extra if d not in group},
                    extra_coords={d: np.asarray(group[d][()]) for d in extra if d in group},
                    a_dims=f.dims[split]["a"], u_dims=f.dims[split]["u"],
                    attrs={k: _from_attr(v) for k, v in group.attrs.items() if k != "split" and not k.startswith("_")},
                )
            for split in f.splits:
                rows = max(1, READ_BYTES // f.sample_bytes(split))
                for lo in range(0, f.n_samples(split), rows):
                    hi = min(lo + rows, f.n_samples(split))
                    writer.append(split, f.read(split, "a", None, slice(lo, hi)), f.read(split, "u", None, slice(lo, hi)))
    return out


def add_rechunk_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `rechunk SRC --out DST [--force]` to a CLI."""
    p = subparsers.add_parser("rechunk", help="rewrite a canonical file with chunks that make out-of-core reads fast")
    p.add_argument("src", help="the canonical file to rewrite")
    p.add_argument("--out", required=True, help="the new canonical file")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run_rechunk)
    return p


def run_rechunk(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = rechunk(args.src, args.out, force=args.force)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    return 0
