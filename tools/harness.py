"""What the tools share, written once: variants alternated in fresh processes, timers with
statistics (torch.utils.benchmark), Markdown tables (tabulate) and figures (matplotlib, no display).

Tools are modules of the `tools` package, run from the repository root as `python -m tools.NAME`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from tabulate import tabulate
from torch.utils import benchmark

ROOT = Path(__file__).resolve().parents[1]


def tool_command(tool: str, *args: str) -> list[str]:
    """The command that runs `tools/<tool>.py` with `args` in a fresh interpreter (`python -m tools.<tool>`)."""
    return [sys.executable, "-m", f"tools.{tool}", *args]


def run_json(cmd: Sequence[str], cwd: str | Path = ROOT, env: dict[str, str] | None = None) -> Any:
    """Run `cmd` (from the repository root, or `cwd`; environment `env`, default this one's) in a fresh
    process; its last line of stdout read as JSON. A failed child is a RuntimeError carrying the end of its stderr."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def alternate(variants: Sequence[str], rounds: int, measure: Callable[[int, str], Any],
              report: Callable[[int, str, Any], None] | None = None) -> dict[str, list[Any]]:
    """`measure(round, variant)` for each variant in each round, the order reversed every other round
    (ABBA) so that drifting machine noise hits every variant alike; `report(round, variant, result)`
    after each. `measure` runs a fresh process (`run_json`, `tool_command`) where one variant's
    process settings must not leak into the next. Returns each variant's results in round order."""
    results: dict[str, list[Any]] = {v: [] for v in variants}
    for r in range(rounds):
        for variant in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            result = measure(r, variant)
            results[variant].append(result)
            if report is not None:
                report(r, variant, result)
    return results


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA), so a clock reads finished work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, benchmark.Measurement]:
    """Each function timed `repeats` times by torch.utils.benchmark (its clock synchronizes the
    accelerator), interleaved round-robin with the first one rotating each repeat so noise and
    caches hit all alike, after `warmup` untimed rounds; one Measurement each (median, IQR, times)."""
    names = list(fns)
    timers = {name: benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=name) for name, fn in fns.items()}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[benchmark.Measurement]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            runs[name].append(timers[name].timeit(1))
    return {name: benchmark.Measurement.merge(ms)[0] for name, ms in runs.items()}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table; cells are printed as given (strings are not re-read as numbers);
    `align` gives each column's "left" / "right" / "center" (the separator row's colons)."""
    return tabulate([[str(c) for c in row] for row in rows], headers=[str(h) for h in header], tablefmt="github",
                    disable_numparse=True, colalign=tuple(align) if align else None)


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (tools run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write `fig` to `path` (folders made), close it, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
