"""bench_optim's cases at an earlier commit against the working tree, run alternately in one session.

    python -m tools.bench_optim_against 50a49dd --cases 1,2,3 --rounds 2

Checks the commit out into a temporary git worktree, then runs `tools/bench_optim.py` there and
here in turns (old, new, new, old, …) so both see the same machine load, and prints, for every
row of every case, the median optimizer-step time of each side and new / old.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from tools.harness import ROOT, alternate, markdown_table

# the column that holds the optimizer step's time in each case's table
TIME_COLUMNS = ("opspec Muon ms/step", "ms/step (median)", "optimizer step ms")


def step_times(markdown: str) -> dict[tuple[str, str], float]:
    """{(case heading, row label): ms} from bench_optim's Markdown output."""
    times: dict[tuple[str, str], float] = {}
    case, header = "", None
    for line in markdown.splitlines():
        if line.startswith("### "):
            case, header = re.sub(r"\s+\(\d+ s\)$", "", line[4:]).strip(), None
        elif line.startswith("|") and not set(line) <= set("|-: "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            else:
                column = next((i for i, h in enumerate(header) if h in TIME_COLUMNS), None)
                if column is not None and re.match(r"^[\d.]+", cells[column]):
                    times[(case, cells[0])] = float(re.match(r"^[\d.]+", cells[column]).group())
        elif not line.strip():
            header = None if not line.startswith("|") else header
    return times


def run(tree: Path, args: argparse.Namespace) -> str:
    """bench_optim's Markdown output in `tree`, run as a script file so that commits from before
    tools/ was a package run too."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(tree / "tools" / "bench_optim.py"), "--cases", args.cases, "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: bench_optim.py in {tree} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier commit (e.g. 50a49dd)")
    parser.add_argument("--cases", default="1,2,3")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side, in ABBA order")
    parser.add_argument("--repeats", type=int, default=5, help="bench_optim's timed rounds per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.rev], check=True,
                       capture_output=True)
        trees = {"old": old, "new": ROOT}

        def side_times(k: int, side: str) -> dict[tuple[str, str], float]:
            print(f"round {k + 1}/{args.rounds}: {side}", file=sys.stderr, flush=True)
            return step_times(run(trees[side], args))

        try:  # ABBA: neither side always runs second
            runs = alternate(["old", "new"], args.rounds, side_times)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    samples: dict[str, dict[tuple[str, str], list[float]]] = {"old": defaultdict(list), "new": defaultdict(list)}
    for side, results in runs.items():
        for times in results:
            for key, ms in times.items():
                samples[side][key].append(ms)
    rows = []
    for key in samples["old"]:
        if key in samples["new"]:
            a, b = statistics.median(samples["old"][key]), statistics.median(samples["new"][key])
            rows.append((key[0][:60], key[1], f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}"))
    print(markdown_table(("case", "row", f"{args.rev} ms", "working tree ms", "new / old"), rows))


if __name__ == "__main__":
    main()
