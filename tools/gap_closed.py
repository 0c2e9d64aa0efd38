"""How much of one optimizer's gap to a reference a variant closes, from a finished sweep (issue 26).

    python -m tools.gap_closed checkpoints/sweeps/specmuon_before_darcy_fno --base specmuon \
        --variant specmuon_before --reference muon

Each optimizer's LR is the sweep's selection (on validation when every run has it, the sweep's own
rule: `opspec.sweep.analysis.select` over the sweep seeds); its test error at each resolution is the
mean over every seed trained at that LR. The share closed is (base − variant) / (base − reference):
1 when the variant matches the reference, 0 when it is no better than the base, above 1 when it beats
the reference.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from opspec.sweep.analysis import select
from opspec.sweep.runner import records
from opspec.sweep.selection import selection_split
from opspec.sweep.spec import build_spec, load_spec_file
from tools.harness import markdown_table


def mean_errors(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Seed-mean final test error at each resolution label."""
    labels = runs[0]["final"].keys()
    return {label: statistics.mean(r["final"][label] for r in runs) for label in labels}


def gap_rows(sweep_dir: Path, base: str, variant: str, reference: str) -> list[list[str]]:
    """One row per resolution: the three seed-mean test errors, their seeds, and the share of the gap closed."""
    spec = build_spec(load_spec_file(sweep_dir / "spec.yaml"))
    done = records(sweep_dir)
    chosen = select(done, [base, variant, reference], spec.seeds, selection_split(done))
    missing = [name for name in (base, variant, reference) if name not in chosen]
    if missing:
        raise SystemExit(f"error: {sweep_dir}: no finished runs of {', '.join(missing)}")
    means = {name: mean_errors(runs) for name, (_, runs) in chosen.items()}
    seeds = "/".join(str(len(chosen[name][1])) for name in (base, variant, reference))
    rows = []
    for label in means[base]:
        b, v, r = means[base][label], means[variant][label], means[reference][label]
        rows.append([label, f"{b:.5f}", f"{v:.5f}", f"{r:.5f}", seeds, f"{(b - v) / (b - r):.0%}" if b != r else "—"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a sweep folder (opspec.sweep's --out)")
    parser.add_argument("--base", required=True, help="the optimizer that trails")
    parser.add_argument("--variant", required=True, help="the optimizer meant to close the gap")
    parser.add_argument("--reference", required=True, help="the optimizer the base trails")
    args = parser.parse_args(argv)
    rows = gap_rows(args.sweep, args.base, args.variant, args.reference)
    header = ["resolution", f"{args.base} test", f"{args.variant} test", f"{args.reference} test", "seeds",
              "share of the gap closed"]
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
