"""`convert`: a foreign data file (or a train/test pair) → one canonical file, streamed chunk by chunk.

The output is written through CanonicalWriter (temp file, then rename), so a bad input — missing keys,
inconsistent shapes, NaN or inf, a truncated file — raises OpspecError and leaves no output behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from opspec.data.canonical import CanonicalWriter
from opspec.data.formats import FORMATS, ForeignFile, open_foreign
from opspec.data.formats.base import Layout
from opspec.data.formats.folders import open_folder
from opspec.data.outputs import check_output_file, check_space
from opspec.data.timesplit import TimeSplit
from opspec.core.errors import OpspecError

DEFAULT_TRAIN_FRACTION = 0.9
DEFAULT_CHUNK_MB = 32.0


def parse_split(value: str | float | int | None) -> str | float | int | None:
    """'train' / 'test' (the file is that whole split), a fraction in (0, 1) or a train count ≥ 1; None stays None."""
    if value is None or value in ("train", "test"):
        return value
    if isinstance(value, str):
        try:
            value = int(value) if value.isdigit() else float(value)
        except ValueError:
            raise OpspecError(f"--split {value!r}: expected train, test, a fraction in (0, 1) or a train count") from None
    if isinstance(value, float) and 0.0 < value < 1.0:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise OpspecError(f"--split {value!r}: expected train, test, a fraction in (0, 1) or a train count ≥ 1")


def _plan(reader: ForeignFile, pair: ForeignFile | None, split: str | float | int | None) -> list[tuple[ForeignFile, str, int, int]]:
    """(reader, canonical split, first sample, stop) ranges that make up train and test."""
    n = reader.layout.n
    if pair is not None:
        if split not in (None, "train", "test"):
            raise OpspecError(f"--split {split!r} with --pair: use train (SRC is train, the pair is test) or test")
        if not reader.layout.same_grid_as(pair.layout):
            raise OpspecError(
                f"{pair.path}: inconsistent shapes with {reader.path}: a{pair.layout.a_shape}/u{pair.layout.u_shape} "
                f"vs a{reader.layout.a_shape}/u{reader.layout.u_shape} (both splits need one grid)"
            )
        train, test = (pair, reader) if split == "test" else (reader, pair)
        return [(train, "train", 0, train.layout.n), (test, "test", 0, test.layout.n)]
    if split == "test":  # one published test set on its own: a test-only file that evaluate reads
        return [(reader, "test", 0, n)]
    if split == "train":
        raise OpspecError("--split train: a canonical file needs a test split too; give it with --pair "
                          "(a test set alone converts with --split test)")
    n_train = round(n * (DEFAULT_TRAIN_FRACTION if split is None else split)) if not isinstance(split, int) else split
    if not 1 <= n_train < n:
        raise OpspecError(f"{reader.path}: {n} samples cannot be split into {n_train} train and {n - n_train} test")
    return [(reader, "train", 0, n_train), (reader, "test", n_train, n)]


def _same_grid(reader: ForeignFile, other: ForeignFile) -> ForeignFile:
    """`other`, refused with one line when its samples are not on `reader`'s grid."""
    if not reader.layout.same_grid_as(other.layout):
        raise OpspecError(
            f"{other.path}: inconsistent shapes with {reader.path}: a{other.layout.a_shape}/u{other.layout.u_shape} "
            f"vs a{reader.layout.a_shape}/u{reader.layout.u_shape} (all splits need one grid)"
        )
    return other


def _check_finite(reader: ForeignFile, first: int, a: np.ndarray, u: np.ndarray) -> None:
    """Refuse NaN or inf: name the file, the variable and the first bad sample."""
    for name, data in (("input", a), ("output", u)):
        finite = np.isfinite(data).reshape(len(data), -1).all(axis=1)
        if not finite.all():
            bad = first + int(np.argmin(finite))
            raise OpspecError(f"{reader.path}: the {name} contains NaN or inf (first at sample {bad}); refusing to convert")


def convert(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    problem: str,
    fmt: str | None = None,
    split: str | float | int | None = None,
    pair: str | os.PathLike | None = None,
    chunk_mb: float = DEFAULT_CHUNK_MB,
    force: bool = False,
    attrs: dict[str, Any] | None = None,
    progress: bool = False,
    t_in: int | None = None,
    t_stride: int | None = None,
    t_out: int | None = None,
) -> Path:
    """Convert `src` (and `pair`, the other split) to the canonical file `out`, `chunk_mb` of output at a time.

    `split`: None → the first 90 % of samples train, the rest test (or SRC train / PAIR test with a pair);
    a fraction or a count → that many train samples first; 'train' / 'test' → SRC is that split, PAIR the other.
    `t_in`: for a trajectory output u (time first), the FNO papers' task instead: a = u at the first
    t_in times, u = the rest (coordinates t_in and t_out, as opspec's Navier–Stokes generator writes).
    `t_stride`: keep every t_stride-th output time (t_stride, 2·t_stride, … steps after the file's
    first), before `t_in` splits them: a long trajectory at a coarser time step.
    `t_out`: with `t_in`, keep only the next t_out times as the output.
    `src` may be a dataset folder (The Well's train/ and test/ folders, PDEArena's shards): each split's
    files are read in name order. `split='test'` without a pair writes a test-only file.
    """
    out = check_output_file(out, force=force)
    if not problem:
        raise OpspecError("--problem: give the problem name stored in the file (e.g. darcy, burgers, navier_stokes)")
    split = parse_split(split)
    if isinstance(chunk_mb, bool) or not isinstance(chunk_mb, (int, float)) or not 0 < chunk_mb < float("inf"):
        raise OpspecError(f"--chunk-mb {chunk_mb!r}: expected a finite number of megabytes > 0")
    readers: list[ForeignFile] = []
    try:
        if Path(src).is_dir():
            if pair is not None or split is not None:
                raise OpspecError(f"{src}: a dataset folder gives its own train and test splits; drop --pair and --split")
            readers += open_folder(src, fmt).values()  # train, test, then valid where the dataset has one
        else:
            readers.append(open_foreign(src, fmt))
            if pair is not None:
                readers.append(open_foreign(pair, fmt))
        reader = readers[0]
        layout = reader.layout
        if layout.attrs.get("source_task") == "trajectory" and t_in is None:
            raise OpspecError(f"{reader.path}: a {layout.name} file holds whole trajectories: give --t-in (steps in) "
                              "and --t-out (steps out)")
        if layout.problem is not None and layout.problem != problem:
            raise OpspecError(
                f"--problem {problem}: {reader.path} holds {layout.problem} data ({layout.name} layout); "
                f"pass --problem {layout.problem}"
            )
        plan = _plan(reader, readers[1] if len(readers) > 1 else None, split)
        if len(readers) > 2:  # a dataset folder's valid split: the canonical file's `valid`
            plan.insert(1, (_same_grid(reader, readers[2]), "valid", 0, readers[2].layout.n))
        check_space(out, sum(stop - start for _, _, start, stop in plan) * layout.sample_bytes())
        rows = max(1, int(chunk_mb * 2**20 // max(1, layout.sample_bytes())))  # samples are read whole
        if t_stride is not None:
            steps = layout.u_shape[0] if layout.u_dims and layout.u_dims[0] == "t" else None
            layout = stride_time(reader.path, layout, t_stride)
            short = steps is not None and isinstance(t_in, int) and layout.u_shape[0] <= t_in
            if t_stride > 1 and short:
                most = steps // (t_in + 1)
                raise OpspecError(
                    f"{reader.path}: --t-in {t_in} --t-stride {t_stride}: every {t_stride}-th of the {steps} times leaves "
                    f"{layout.u_shape[0]}, and --t-in {t_in} needs at least {t_in + 1}; expected "
                    + (f"--t-stride at most {most}" if most >= 1 else f"--t-in at most {steps - 1} without --t-stride"))
        time_split = None
        if t_in is not None:
            layout, time_split = split_time(reader.path, layout, t_in)
        if t_out is not None:
            layout = limit_t_out(reader.path, layout, t_in, t_out)
        root_attrs = {
            "source": Path(src).name,
            "source_format": reader.format,
            "source_layout": layout.name,
            **({"source_pair": Path(pair).name} if pair is not None else {}),
            **layout.attrs,
            **dict(attrs or {}),
        }
        bar = _progress(sum(stop - start for _, _, start, stop in plan), enabled=progress)
        splits = tuple(dict.fromkeys(name for _, name, _, _ in plan))
        with CanonicalWriter(out, problem=problem, coords=layout.coords, grid=layout.grid, attrs=root_attrs,
                             splits=splits) as writer:
            for part, name, start, stop in plan:
                writer.add_split(
                    name, stop - start, extra_dims=layout.extra_dims(), extra_coords=layout.extra_coords,
                    a_dims=("sample", *layout.a_dims), u_dims=("sample", *layout.u_dims),
                    attrs={"source": part.path.name, "source_samples": f"{start}:{stop}"},
                )
            for part, name, start, stop in plan:
                for first, a, u in part.chunks(rows, start, stop):
                    _check_finite(part, first, a, u)
                    if t_stride is not None:
                        u = u[:, t_stride - 1::t_stride]
                    if time_split is not None:
                        a, u = time_split(u)
                    if t_out is not None:
                        u = u[:, :t_out]
                    writer.append(name, a, u)
                    bar.update(len(a))
        bar.close()
    finally:
        for r in readers:
            r.close()
    return out


def stride_time(path: Path, layout: Layout, t_stride: int) -> Layout:
    """The layout with every t_stride-th output time (the times t_stride, 2·t_stride, … of the output axis)."""
    if not layout.u_dims or layout.u_dims[0] != "t":
        raise OpspecError(f"{path}: --t-stride needs an output with a leading time axis; this file's output has dims {layout.u_dims}")
    steps = layout.u_shape[0]
    if not 1 <= t_stride <= steps:
        raise OpspecError(f"{path}: --t-stride {t_stride}: expected 1 to {steps} (the output has {steps} times)")
    times = layout.extra_coords.get("t", np.arange(1.0, steps + 1.0))
    return dataclasses.replace(
        layout, u_shape=(steps // t_stride, *layout.u_shape[1:]),
        extra_coords={**layout.extra_coords, "t": times[t_stride - 1::t_stride]},
    )


def limit_t_out(path: Path, layout: Layout, t_in: int | None, t_out: int) -> Layout:
    """The layout with only the first t_out output times (after --t-in)."""
    if t_in is None:
        raise OpspecError(f"{path}: --t-out needs --t-in (the steps in come first)")
    steps = layout.u_shape[0]
    if not 1 <= t_out <= steps:
        raise OpspecError(f"{path}: --t-out {t_out}: expected 1 to {steps} (after --t-in {t_in}, {steps} times are left)")
    return dataclasses.replace(layout, u_shape=(t_out, *layout.u_shape[1:]),
                               extra_coords={**layout.extra_coords, "t_out": layout.extra_coords["t_out"][:t_out]})


def split_time(path: Path, layout: Layout, t_in: int) -> tuple[Layout, TimeSplit]:
    """The layout of (u at the first t_in times) → (u at the later times), dropping the file's own input,
    and the split that turns each chunk's trajectories into that pair."""
    if not layout.u_dims or layout.u_dims[0] != "t":
        raise OpspecError(f"{path}: --t-in needs an output with a leading time axis; this file's output has dims {layout.u_dims}")
    steps = layout.u_shape[0]
    if not 1 <= t_in < steps:
        raise OpspecError(f"{path}: --t-in {t_in}: expected 1 to {steps - 1} (the output has {steps} times)")
    split = TimeSplit(t_in, layout.extra_coords.get("t", np.arange(1.0, steps + 1.0)))
    (a_dims, u_dims), (a_shape, u_shape) = split.dims(layout.u_dims[1:]), split.shapes(layout.u_shape[1:])
    layout = dataclasses.replace(
        layout, a_dims=a_dims, a_shape=a_shape, u_dims=u_dims, u_shape=u_shape, extra_coords=split.coords,
    )
    return layout, split


def _progress(total: int, enabled: bool):
    """A tqdm bar over samples; silent when `enabled` is false."""
    from tqdm import tqdm

    return tqdm(total=total, unit="sample", desc="convert", disable=not enabled)


def add_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `convert SRC [--from FORMAT] --problem P [--split ...] [--pair FILE] --out FILE` to a CLI."""
    p = subparsers.add_parser("convert", help="convert a foreign data file (FNO .mat, PDEBench HDF5, neuraloperator .pt)")
    p.add_argument("src", help="the foreign file, or a dataset folder (The Well: train/ and test/ folders; PDEArena: shards)")
    p.add_argument("--from", dest="fmt", choices=FORMATS, default=None, help="force the input format (default: detect)")
    p.add_argument("--problem", required=True, help="problem name stored in the canonical file (darcy, burgers, …)")
    p.add_argument(
        "--split", default=None,
        help="fraction or count of train samples (default 0.9), or train/test when --pair gives the other split",
    )
    p.add_argument("--pair", default=None, help="a second file holding the other split (e.g. darcy_test_16.pt)")
    p.add_argument("--out", required=True, help="the canonical HDF5 file to write")
    p.add_argument("--chunk-mb", type=float, default=DEFAULT_CHUNK_MB, help="output MB per chunk (memory bound)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--t-in", type=int, default=None, help="trajectory outputs: input = the first T_IN times, output = "
                   "the rest (the FNO paper's Navier–Stokes task)")
    p.add_argument("--t-stride", type=int, default=None, help="trajectory outputs: keep every T_STRIDE-th time "
                   "(applied before --t-in)")
    p.add_argument("--t-out", type=int, default=None, help="with --t-in: the output is the next T_OUT times "
                   "(default: all the rest)")
    p.set_defaults(func=run_convert)
    return p


def run_convert(args: argparse.Namespace) -> int:
    """The `convert` command: convert, then print what was written and how fast."""
    start = time.perf_counter()
    out = convert(
        args.src, args.out, problem=args.problem, fmt=args.fmt, split=args.split, pair=args.pair,
        chunk_mb=args.chunk_mb, force=args.force, progress=sys.stderr.isatty(), t_in=args.t_in, t_stride=args.t_stride,
        t_out=args.t_out,
    )
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    return 0
