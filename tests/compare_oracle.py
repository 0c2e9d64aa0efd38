"""FROZEN ORACLE: tools/compare_optimizers.py as it was at 57dae46, before it became a front-end to
opspec.sweep; tests/test_sweep.py checks that the sweep's tables agree with the ones this made from the
same runs. Do not edit: it is the reference, not a tool. Only its tables are kept (its training and its
CLI, `train_one` and `main`, are cut so that it imports nothing the trainer may rename). The original
docstring follows.

Compare optimizers on one problem and model: same data, model, epochs and seeds, a small LR sweep each.

    python -m tools.compare_optimizers darcy fno --optimizers adamw,muon,specmuon --epochs 15 --seeds 0

Every (optimizer, lr, seed) run trains with opspec's Trainer from `configs/<problem>_<model>.yaml`
(or --config) plus the overrides given, and appends its learning curve and final relative L2 at
every evaluation resolution to OUT/results.jsonl; a rerun skips the runs already there, so an
interrupted sweep resumes. For each optimizer the LR with the lowest seed-mean final error at the
training resolution over the sweep seeds is kept (chosen on the test split: the files have no
validation split). Where that LR is the smallest or largest swept, the sweep goes one step further
that way (`--extend-edges` times at most, by the ratio of the two outermost factors); a best LR still
at the edge is marked "(edge)": the sweep may not have found the best. `--confirm-seeds` are then
trained at each optimizer's best LR only, and the table's mean ± spread is over the sweep and the
confirm seeds together. Writes OUT/summary.md, OUT/summary.csv, OUT/sweep.md and OUT/curves.png.

With `--budgets 1,0.5,0.25` each optimizer also trains full schedules of round(E·b) epochs for each
budget b, with the LR re-swept per budget (centred on its best LR at the next larger budget, by
`--budget-lr-factors`, edges extended as above) and the same seeds. OUT/budgets.md then gives each
optimizer's smallest budget that matches AdamW's full-budget error, interpolated on log-log axes between
the two budgets that bracket it, per seed mean and per seed; and that budget's wall-clock cost relative
to AdamW's full run (the budget times the ratio of seconds per epoch, the optimizer's own step included);
OUT/budgets.png plots error against budget. Each budget's own tables are in OUT/budget_<b>/.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


ROOT = Path(__file__).resolve().parent.parent
# The centre of each optimizer's LR sweep: AdamW's tuned Darcy LR; the spectral optimizers all use
# match_rms_adamw scaling (and the family rescales to the polar factor's norm), so one centre fits them.
BASE_LR = {"adamw": 3e-3}
DEFAULT_BASE_LR = 1e-2


def run_key(optimizer: str, lr: float, seed: int, epochs: int) -> str:
    return f"{optimizer}|{lr:.6g}|{seed}|{epochs}"


def _round(lr: float) -> float:
    """LRs to six significant digits, so a rerun's keys match the stored ones."""
    return float(f"{lr:.6g}")


def sweep_lrs(base: float, factors: list[float]) -> list[float]:
    return sorted(_round(base * f) for f in factors)


def _edge_mark(lr: float, swept: Any) -> str:
    """" (edge)" when the chosen LR is the smallest or largest of several swept: the best may lie beyond."""
    lrs = sorted(set(swept))
    return " (edge)" if len(lrs) > 1 and lr in (lrs[0], lrs[-1]) else ""


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {run_key(r["optimizer"], r["lr"], r["seed"], r["epochs"]): r for r in rows}


def budget_epochs(epochs: int, budget: float) -> int:
    """Epochs of a schedule at `budget` times the full length (at least one)."""
    return max(1, round(epochs * budget))


def matched_budget(budgets: list[float], errors: list[float], target: float) -> tuple[float | None, str]:
    """The smallest budget whose error reaches `target`, interpolated linearly in (log budget, log error).

    Returns (budget, relation): relation "=" for an interpolated or exact match, "≤" when even the
    smallest budget reaches the target (the match may lie lower), and (None, ">") when none does.
    """
    points = sorted(zip(budgets, errors))
    for i, (b, e) in enumerate(points):
        if e <= target:
            if i == 0:
                return b, "≤" if e < target else "="
            b_hi_err, e_hi_err = points[i - 1]
            t = (math.log(e_hi_err) - math.log(target)) / (math.log(e_hi_err) - math.log(e))
            return math.exp(math.log(b_hi_err) + t * (math.log(b) - math.log(b_hi_err))), "="
    return None, ">"


def _budget_text(match: tuple[float | None, str], top: float) -> str:
    b, rel = match
    if b is None:
        return f"> {top:g}"
    return f"{'≤ ' if rel == '≤' else ''}{b:.2f}"


def _mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}"


def best_lr(runs: list[dict[str, Any]], seeds: list[int]) -> float:
    """The LR with the lowest mean final error at the training resolution over `seeds`."""
    train_res = str(runs[0]["train_resolution"])
    by_lr: dict[float, list[float]] = {}
    for r in runs:
        if r["seed"] in seeds:
            by_lr.setdefault(r["lr"], []).append(r["final"][train_res])
    return min(by_lr, key=lambda lr: statistics.mean(by_lr[lr]))


def summarize(results: list[dict[str, Any]], optimizers: list[str], seeds: list[int], out: Path, command: str) -> str:
    """Best LR per optimizer (chosen on `seeds`), its errors over all seeds run there (mean ± half-range),
    epochs to AdamW's final error; the sweep table over `seeds`."""
    by_opt: dict[str, dict[float, list[dict[str, Any]]]] = {}
    for r in results:
        by_opt.setdefault(r["optimizer"], {}).setdefault(r["lr"], []).append(r)
    train_res = str(results[0]["train_resolution"])
    resolutions = list(results[0]["final"])
    best: dict[str, tuple[float, list[dict[str, Any]]]] = {}
    for name in optimizers:
        if name in by_opt:
            lr = best_lr([r for runs in by_opt[name].values() for r in runs], seeds)
            best[name] = (lr, sorted(by_opt[name][lr], key=lambda r: r["seed"]))

    def mean_curve(runs: list[dict[str, Any]]) -> list[float]:
        return [statistics.mean(c) for c in zip(*(r["curve"] for r in runs))]

    target = mean_curve(best["adamw"][1])[-1] if "adamw" in best else None
    header = ["optimizer", "best lr", *[f"rel L2 @ {r}" + (" (train)" if r == train_res else "") for r in resolutions],
              "epochs to AdamW's final error", "s / epoch", "seeds"]
    rows = []
    for name, (lr, runs) in best.items():
        curve = mean_curve(runs)
        reach = next((i + 1 for i, v in enumerate(curve) if target is not None and v <= target), None)
        rows.append([name, f"{lr:g}{_edge_mark(lr, by_opt[name])}", *[_mean_spread([r["final"][res] for r in runs]) for res in resolutions],
                     "—" if reach is None else f"{reach} of {len(curve)}",
                     f"{statistics.median(r['seconds_per_epoch'] for r in runs):.2f}", str(len(runs))])
    with (out / "summary.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    sweep = ["| optimizer | " + " | ".join(f"lr {lr:g}" for lr in sorted({r["lr"] for r in results})) + " |"]
    all_lrs = sorted({r["lr"] for r in results})
    sweep.append("|" + "---|" * (len(all_lrs) + 1))
    for name in optimizers:
        cells = []
        for lr in all_lrs:
            runs = [r for r in by_opt.get(name, {}).get(lr, []) if r["seed"] in seeds]
            cells.append(f"{statistics.mean(r['final'][train_res] for r in runs):.4f}" if runs else "")
        sweep.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "sweep.md").write_text(f"Final relative L2 at the training resolution {train_res}, mean over seeds "
                                  f"{', '.join(map(str, seeds))}\n\n"
                                  + "\n".join(sweep) + "\n")
    plot_curves(best, out / "curves.png", target)
    text = (f"Command: `{command}`\n\n" + "\n".join(table) + "\n\nLR sweep (final rel L2 at "
            f"{train_res}, mean over seeds {', '.join(map(str, seeds))}):\n\n" + "\n".join(sweep) + "\n")
    (out / "summary.md").write_text(text)
    return text


def plot_curves(best: dict[str, tuple[float, list[dict[str, Any]]]], path: Path, target: float | None) -> None:
    """Test relative L2 per epoch at each optimizer's best LR: seed mean, with the seeds' range shaded."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, (lr, runs) in best.items():
        curves = list(zip(*(r["curve"] for r in runs)))
        epochs = range(1, len(curves) + 1)
        line, = ax.plot(epochs, [statistics.mean(c) for c in curves], label=f"{name} (lr {lr:g})")
        if len(runs) > 1:
            ax.fill_between(epochs, [min(c) for c in curves], [max(c) for c in curves], color=line.get_color(), alpha=0.2)
    if target is not None:
        ax.axhline(target, color="gray", ls=":", lw=1, label="AdamW final")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test relative L2 (training resolution)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _best_runs(runs: list[dict[str, Any]], seeds: list[int]) -> tuple[float, list[dict[str, Any]]]:
    """The best LR over `seeds` and every run (any seed) at it."""
    lr = best_lr(runs, seeds)
    return lr, sorted((r for r in runs if r["lr"] == lr), key=lambda r: r["seed"])


def summarize_budgets(by_budget: dict[float, list[dict[str, Any]]], optimizers: list[str], seeds: list[int],
                      out: Path, command: str, epoch_cost: dict[str, float]) -> str:
    """Per optimizer: best LR and error at each budget, the smallest budget matching AdamW's full-budget
    error (seed mean, and the range over seeds), and its wall-clock cost relative to AdamW's full run."""
    nominal = sorted(by_budget, reverse=True)
    top = nominal[0]
    first = next(iter(by_budget[top]))
    train_res = str(first["train_resolution"])
    # The budgets as trained: round(E·b) epochs out of E, so 8 of 15 epochs counts as 0.533, not 0.5.
    fraction = {b: top * by_budget[b][0]["epochs"] / first["epochs"] for b in nominal}
    by_budget = {fraction[b]: by_budget[b] for b in nominal}
    budgets = [fraction[b] for b in nominal]
    best: dict[str, dict[float, tuple[float, list[dict[str, Any]]]]] = {}
    for name in optimizers:
        for b in budgets:
            runs = [r for r in by_budget[b] if r["optimizer"] == name]
            if runs:
                best.setdefault(name, {})[b] = _best_runs(runs, seeds)
    adamw_full = best["adamw"][top][1]
    target = statistics.mean(r["final"][train_res] for r in adamw_full)
    adamw_sec = statistics.median(r["seconds_per_epoch"] for r in adamw_full)
    header = ["optimizer", *[f"lr @ {b:.3g}" for b in budgets], *[f"rel L2 @ {b:.3g}" for b in budgets],
              "budget to AdamW's full error", "per seed", "s / epoch vs AdamW", "wall-clock vs AdamW's full run"]
    rows = []
    for name, per_budget in best.items():
        errs = [statistics.mean(r["final"][train_res] for r in per_budget[b][1]) for b in budgets]
        match = matched_budget(budgets, errs, target)
        common = set.intersection(*({r["seed"] for r in per_budget[b][1]} for b in budgets))
        per_seed = [matched_budget(budgets, [next(r["final"][train_res] for r in per_budget[b][1] if r["seed"] == s)
                                             for b in budgets], target) for s in sorted(common)]
        matched = sorted((m for m in per_seed if m[0] is not None), key=lambda m: m[0])
        if name == "adamw":
            seed_text = "(the target)"
        elif len(per_seed) < 2:
            seed_text = ""
        elif len(matched) < len(per_seed):
            seed_text = f"{len(per_seed) - len(matched)} of {len(per_seed)} seeds > {top:g}"
        else:
            seed_text = f"{_budget_text(matched[0], top)}–{_budget_text(matched[-1], top)}"
        sec = statistics.median(r["seconds_per_epoch"] for r in per_budget[top][1])
        cost = epoch_cost.get(name, sec / adamw_sec)
        wall = "—" if match[0] is None else f"{'≤ ' if match[1] == '≤' else ''}{match[0] * cost / top:.2f}"
        edge = {b: _edge_mark(per_budget[b][0], [r["lr"] for r in by_budget[b] if r["optimizer"] == name])
                for b in budgets}
        rows.append([name, *[f"{per_budget[b][0]:g}{edge[b]}" for b in budgets],
                     *[_mean_spread([r["final"][train_res] for r in per_budget[b][1]]) for b in budgets],
                     _budget_text(match, top), seed_text, f"{cost:.2f}" + ("" if name not in epoch_cost else " (given)"),
                     wall])
    with (out / "budgets.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    plot_budgets(best, budgets, train_res, target, out / "budgets.png")
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    epochs = ", ".join(f"{by_budget[b][0]['epochs']} ({b:.3g})" for b in budgets)
    text = (f"Command: `{command}`\n\nRelative L2 at the training resolution {train_res} (mean ± half-range over "
            f"seeds, each budget at its own best LR); AdamW's full-budget error {target:.4f}. Epochs per budget: "
            f"{epochs}.\n\n"
            + "\n".join(table) + "\n")
    (out / "budgets.md").write_text(text)
    return text


def plot_budgets(best: dict[str, dict[float, tuple[float, list[dict[str, Any]]]]], budgets: list[float],
                 train_res: str, target: float, path: Path) -> None:
    """Final error against training budget, log-log: seed mean with the seeds' range as error bars."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = sorted(budgets)
    for name, per_budget in best.items():
        vals = [[r["final"][train_res] for r in per_budget[b][1]] for b in xs]
        means = [statistics.mean(v) for v in vals]
        ax.errorbar(xs, means, yerr=[[m - min(v) for m, v in zip(means, vals)], [max(v) - m for m, v in zip(means, vals)]],
                    marker="o", capsize=3, label=name)
    ax.axhline(target, color="gray", ls=":", lw=1, label="AdamW, full budget")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{b:.3g}" for b in xs])
    ax.set_xlabel("training budget (fraction of the full schedule)")
    ax.set_ylabel(f"final test relative L2 at {train_res}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
