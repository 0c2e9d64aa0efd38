"""The budget-matched analysis of a sweep's records: the tables (Markdown and CSV) and their plots.

Per budget: each optimizer's LR selected on validation (test only for runs that lack it, and labelled
so), the test error of the selected runs at every evaluation resolution (mean ± 95% Student-t interval
over all seeds there), their final training loss, the epochs to the target's final error, seconds per
epoch; and the LR grid's selection scores. Across budgets: the smallest budget that matches the
target's full-budget test error (log-log interpolation, seed mean and per seed), the check trained at
the nearest realizable epoch count (its error with interval, and whether it reaches the target), and
the wall-clock relative to the target's full run.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path
from typing import Any

from opspec.sweep.plots import plot_budgets, plot_curves
from opspec.sweep.selection import TEST_FALLBACK, best_lr, edge_mark, score, selection_split, final_test_error
from opspec.sweep.spec import SweepSpec
from opspec.sweep.stats import budget_text, ci95, matched_budget, mean_ci

Record = dict[str, Any]
Best = dict[str, tuple[float, list[Record]]]  # optimizer → (selected LR, every run at it, by seed)


def display(name: str) -> str:
    """An optimizer's name in table headers."""
    return {"adamw": "AdamW"}.get(name, name)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """The same table as CSV."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def select(records: list[Record], optimizers: list[str], seeds: list[int], split: str) -> Best:
    """Each optimizer's selected LR (on `seeds`) and every trained run at it."""
    best: Best = {}
    for name in optimizers:
        runs = [r for r in records if r["optimizer"] == name]
        if runs:
            lr = best_lr(runs, seeds, split)
            best[name] = (lr, sorted((r for r in runs if r["lr"] == lr and "diverged" not in r), key=lambda r: r["seed"]))
    return best


def _mean_curve(runs: list[Record]) -> list[float]:
    """The seed-mean test curve, epoch by epoch."""
    return [statistics.mean(c) for c in zip(*(r["curve"] for r in runs))]


def _split_note(split: str) -> str:
    """The sentence every table carries about the split selection read."""
    if split == TEST_FALLBACK:
        return ("Selection on the TEST split: these runs record no validation error (written before "
                "val_rel_l2 existed), so the selected test errors are optimistic.")
    return "LRs selected on the validation split; test errors reported once, for the selected runs."


def summarize(records: list[Record], spec: SweepSpec, out: Path, command: str, split: str | None = None) -> str:
    """One budget's tables: summary.md/.csv (the selected runs), sweep.md (the grid) and curves.png."""
    split = split or selection_split(records)
    out.mkdir(parents=True, exist_ok=True)
    trained = [r for r in records if "diverged" not in r]
    train_res = str(trained[0]["train_resolution"])
    resolutions = list(trained[0]["final"])
    best = select(records, spec.optimizers, spec.seeds, split)
    target = _mean_curve(best[spec.target][1])[-1] if spec.target in best and best[spec.target][1] else None
    header = ["optimizer", "best lr",
              *[f"rel L2 @ {r}" + (" (train)" if r == train_res else "") for r in resolutions],
              f"epochs to {display(spec.target)}'s final error", "s / epoch", "seeds", "final train loss", "selected on"]
    rows = []
    for name, (lr, runs) in best.items():
        swept = [r["lr"] for r in records if r["optimizer"] == name]
        if not runs:
            rows.append([name, f"{lr:g}{edge_mark(lr, swept)}", *["diverged"] * len(resolutions), "—", "—", "0", "—", split])
            continue
        curve = _mean_curve(runs)
        reach = next((i + 1 for i, v in enumerate(curve) if target is not None and v <= target), None)
        rows.append([name, f"{lr:g}{edge_mark(lr, swept)}", *[mean_ci([r["final"][res] for r in runs]) for res in resolutions],
                     "—" if reach is None else f"{reach} of {len(curve)}",
                     f"{statistics.median(r['seconds_per_epoch'] for r in runs):.2f}", str(len(runs)),
                     mean_ci([r["train_loss"][-1] for r in runs]), split])
    _write_csv(out / "summary.csv", header, rows)
    all_lrs = sorted({r["lr"] for r in records})
    grid = []
    for name in spec.optimizers:
        cells = []
        for lr in all_lrs:
            scores = [score(r, split) for r in records if r["optimizer"] == name and r["lr"] == lr and r["seed"] in spec.seeds]
            cells.append("" if not scores else "diverged" if any(s == float("inf") for s in scores)
                         else f"{statistics.mean(scores):.4f}")
        grid.append([name, *cells])
    sweep = _table(["optimizer", *(f"lr {lr:g}" for lr in all_lrs)], grid)
    seeds = ", ".join(map(str, spec.seeds))
    what = "validation" if split != TEST_FALLBACK else "test"
    (out / "sweep.md").write_text(f"Final relative L2 on the {what} split at the training resolution {train_res}, "
                                  f"mean over seeds {seeds}\n\n" + "\n".join(sweep) + "\n")
    plot_curves(best, out / "curves.png", target)
    text = (f"Command: `{command}`\n\n{_split_note(split)} Test errors: mean ± 95% Student-t interval over the "
            f"seeds.\n\n" + "\n".join(_table(header, rows)) + f"\n\nLR sweep (final rel L2 on the {what} split at "
            f"{train_res}, mean over seeds {seeds}):\n\n" + "\n".join(sweep) + "\n")
    (out / "summary.md").write_text(text)
    return text


def _by_budget(records: list[Record], spec: SweepSpec) -> dict[float, list[Record]]:
    """The grid and confirm-seed records of each budget (the matched-budget checks stay apart)."""
    return {b: [r for r in records if r["epochs"] == spec.budget_epochs(b) and r.get("role") != "budget"]
            for b in spec.budgets}


def summarize_budgets(records: list[Record], spec: SweepSpec, out: Path, command: str) -> str:
    """budgets.md/.csv/.png: per optimizer the selected LR, test error and training loss at each budget,
    the budget matching the target's full-budget error, its confirmation, and the wall-clock ratio."""
    split = selection_split(records)
    groups = _by_budget(records, spec)
    budgets = [spec.budget_epochs(b) / spec.epochs for b in spec.budgets]  # as trained: 8 of 15 epochs is 0.533
    best = {b: select(groups[nominal], spec.optimizers, spec.seeds, split) for b, nominal in zip(budgets, spec.budgets)}
    per_opt = {name: {b: best[b][name] for b in budgets if name in best[b] and best[b][name][1]} for name in spec.optimizers}
    per_opt = {name: v for name, v in per_opt.items() if len(v) == len(budgets)}
    first = per_opt[spec.target][1.0][1][0]
    train_res = str(first["train_resolution"])
    target_runs = per_opt[spec.target][1.0][1]
    target = statistics.mean(final_test_error(r) for r in target_runs)
    target_sec = statistics.median(r["seconds_per_epoch"] for r in target_runs)
    name_t = display(spec.target)
    header = ["optimizer", *[f"lr @ {b:.3g}" for b in budgets], *[f"rel L2 @ {b:.3g}" for b in budgets],
              f"budget to {name_t}'s full error", "per seed", f"s / epoch vs {name_t}", f"wall-clock vs {name_t}'s full run",
              *[f"train loss @ {b:.3g}" for b in budgets], "confirmed at", "confirmed rel L2", "reaches the target"]
    rows = []
    for name, chosen in per_opt.items():
        errs = [statistics.mean(final_test_error(r) for r in chosen[b][1]) for b in budgets]
        match = matched_budget(budgets, errs, target)
        common = set.intersection(*({r["seed"] for r in chosen[b][1]} for b in budgets))
        per_seed = [matched_budget(budgets, [next(final_test_error(r) for r in chosen[b][1] if r["seed"] == s) for b in budgets],
                                   target) for s in sorted(common)]
        matched = sorted((m for m in per_seed if m[0] is not None), key=lambda m: m[0])
        if name == spec.target:
            seed_text = "(the target)"
        elif len(per_seed) < 2:
            seed_text = ""
        elif len(matched) < len(per_seed):
            seed_text = f"{len(per_seed) - len(matched)} of {len(per_seed)} seeds > 1"
        else:
            seed_text = f"{budget_text(matched[0], 1.0)}–{budget_text(matched[-1], 1.0)}"
        sec = statistics.median(r["seconds_per_epoch"] for r in chosen[1.0][1])
        cost = spec.epoch_cost.get(name, sec / target_sec)
        wall = "—" if match[0] is None else f"{'≤ ' if match[1] == '≤' else ''}{match[0] * cost:.2f}"
        edge = {b: edge_mark(chosen[b][0], [r["lr"] for r in groups[nominal] if r["optimizer"] == name])
                for b, nominal in zip(budgets, spec.budgets)}
        checks = [r for r in records if r["optimizer"] == name and r.get("role") == "budget" and "diverged" not in r]
        confirmed = ["—", "—", "—"]
        if checks:
            epochs = max(r["epochs"] for r in checks)
            errors = [final_test_error(r) for r in checks if r["epochs"] == epochs]
            reached = statistics.mean(errors) <= target
            within = "yes" if reached else "no"
            if len(errors) > 1 and abs(statistics.mean(errors) - target) <= ci95(errors):
                within += " (within the interval)"
            confirmed = [f"{epochs} epochs ({epochs / spec.epochs:.2f})", mean_ci(errors), within]
        rows.append([name, *[f"{chosen[b][0]:g}{edge[b]}" for b in budgets],
                     *[mean_ci([final_test_error(r) for r in chosen[b][1]]) for b in budgets],
                     budget_text(match, 1.0), seed_text, f"{cost:.2f}" + (" (given)" if name in spec.epoch_cost else ""),
                     wall, *[mean_ci([r["train_loss"][-1] for r in chosen[b][1]]) for b in budgets], *confirmed])
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "budgets.csv", header, rows)
    plot_budgets(per_opt, budgets, train_res, target, out / "budgets.png")
    epochs = ", ".join(f"{spec.budget_epochs(b)} ({f:.3g})" for b, f in zip(spec.budgets, budgets))
    text = (f"Command: `{command}`\n\n{_split_note(split)} Test relative L2 at the training resolution {train_res} "
            f"(mean ± 95% Student-t interval over seeds, each budget at its own selected LR); {name_t}'s full-budget "
            f"error {target:.4f}. Epochs per budget: {epochs}. A matched budget between two swept ones is confirmed "
            "by training every seed at the nearest whole number of epochs (the LR selected at the nearest swept "
            "budget).\n\n" + "\n".join(_table(header, rows)) + "\n")
    (out / "budgets.md").write_text(text)
    return text


def write_report(records: list[Record], spec: SweepSpec, out: Path, command: str) -> str:
    """Every table and plot of a sweep under `out`; the text of the main table."""
    trained = [r for r in records if "diverged" not in r]
    if not trained:
        return "no finished trial to analyse yet\n"
    split = selection_split(records)
    if split == TEST_FALLBACK:
        print("warning: no validation error in these runs' metrics.jsonl: LRs are selected on the TEST split "
              "(the tables say so)", file=sys.stderr)
    if len(spec.budgets) == 1:
        return summarize([r for r in records if r.get("role") != "budget"], spec, out, command, split)
    for b, runs in _by_budget(records, spec).items():
        if [r for r in runs if "diverged" not in r]:
            summarize(runs, spec, out / f"budget_{b:g}", command, split)
    return summarize_budgets(records, spec, out, command)
