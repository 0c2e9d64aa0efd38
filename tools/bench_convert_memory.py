"""Peak memory of `convert` against input size: streaming means peak RSS stays flat as the file grows.

Writes a synthetic FNO Navier–Stokes file in MATLAB v7.3 layout (HDF5 after a 512-byte MAT header, axes
reversed: a (s, s, N), u (T, s, s, N), float64 as MATLAB saves) of each requested size, converts it in a
fresh child process, and reports the child's peak RSS (os.wait4's ru_maxrss) next to a baseline child that
imports the same modules and converts nothing.

    OMP_NUM_THREADS=1 python -m tools.bench_convert_memory --size 200M [--size 1G …] [--dir /tmp/bench]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

CHILD = """
import sys
from opspec.data.convert import convert
from opspec.data.formats import open_foreign
if sys.argv[1] != "-":
    convert(sys.argv[1], sys.argv[2], problem="navier_stokes", split=0.9, chunk_mb=float(sys.argv[3]), force=True)
"""


def parse_size(text: str) -> int:
    """'200M', '1.5G', '4096' → bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    text = text.strip().upper().removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def write_synthetic_v73(path: Path, size: int, s: int = 64, t: int = 50, block: int = 16) -> int:
    """Write about `size` bytes of NS data in v7.3 layout, `block` samples at a time; returns the sample count."""
    n = max(2, size // ((t + 1) * s * s * 8))
    rng = np.random.default_rng(0)
    with h5py.File(path, "w", userblock_size=512) as f:
        a = f.create_dataset("a", (s, s, n), dtype="f8")
        u = f.create_dataset("u", (t, s, s, n), dtype="f8")
        f["t"] = np.arange(1.0, t + 1.0)[:, None]
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            a[..., lo:hi] = rng.standard_normal((s, s, hi - lo))
            u[..., lo:hi] = rng.standard_normal((t, s, s, hi - lo))
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, synthetic (opspec bench)".ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    return n


def child_peak_rss(args: list[str]) -> tuple[float, float]:
    """Run the child script; (peak RSS in MiB, wall seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", default=None, help="input size, e.g. 200M or 1G (repeatable)")
    parser.add_argument("--dir", default=None, help="where the synthetic and converted files go (default: a temp dir)")
    parser.add_argument("--chunk-mb", type=float, default=32.0, help="convert's output chunk size")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench_convert_"))
    folder.mkdir(parents=True, exist_ok=True)
    baseline, _ = child_peak_rss(["-", "-", "0"])
    print(f"baseline (imports only): peak RSS {baseline:.0f} MiB; chunk {args.chunk_mb:g} MB")
    print(f"{'input MiB':>10} {'samples':>8} {'output MiB':>10} {'peak RSS MiB':>13} {'above baseline':>15} {'convert s':>10}")
    for text in args.size or ["200M"]:
        src, out = folder / f"ns_{text}.mat", folder / f"ns_{text}.h5"
        n = write_synthetic_v73(src, parse_size(text))
        peak, seconds = child_peak_rss([str(src), str(out), str(args.chunk_mb)])
        print(
            f"{src.stat().st_size / 2**20:>10.0f} {n:>8} {out.stat().st_size / 2**20:>10.0f} {peak:>13.0f} "
            f"{peak - baseline:>15.0f} {seconds:>10.1f}"
        )
        if not args.keep:
            src.unlink()
            out.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
