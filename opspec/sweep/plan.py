"""The protocol as a plan: which trials the sweep still needs, given the ones that finished.

Per optimizer, budget by budget from the full one down: the LR grid (the spec's at the full budget, then
`budget_lr_factors` around the LR selected at the next larger budget) over the sweep seeds; while the
selected LR sits at an edge of the grid, one more LR beyond it (the grid's own outer ratio), at most
`extend_edges` times; then the confirm seeds at the selected LR. When every budget is done, the matched
budget of each optimizer is computed and, where it falls between swept budgets, trained at the nearest
realizable epoch count with every seed (the LR selected at the nearest swept budget). Each call returns
everything that can be decided now; the runner calls it again until it returns nothing.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from opspec.sweep.records import TrialSpec, trial_key
from opspec.sweep.selection import best_lr, selection_split, final_test_error
from opspec.sweep.spec import SweepSpec, round_lr
from opspec.sweep.stats import matched_budget

Records = dict[str, dict[str, Any]]


def _missing(trials: list[TrialSpec], done: Records) -> list[TrialSpec]:
    """The trials without a result."""
    return [t for t in trials if t.key not in done]


def _runs(done: Records, name: str, lrs: list[float], seeds: list[int], epochs: int) -> list[dict[str, Any]]:
    """The records of a grid over seeds (all finished)."""
    return [done[trial_key(name, lr, s, epochs)] for lr in lrs for s in seeds]


def sweep_budget(spec: SweepSpec, done: Records, name: str, lrs: list[float], epochs: int,
                 split: str) -> tuple[list[TrialSpec], float | None]:
    """The trials one grid still needs, and its selected LR once the grid and its extensions are done."""
    seeds = spec.seeds
    missing = _missing([TrialSpec(name, lr, s, epochs) for lr in lrs for s in seeds], done)
    if missing:
        return missing, None
    for _ in range(spec.extend_edges):
        lr = best_lr(_runs(done, name, lrs, seeds, epochs), seeds, split)
        if len(lrs) < 2 or lr not in (lrs[0], lrs[-1]):
            break
        step = lrs[1] / lrs[0] if lr == lrs[0] else lrs[-1] / lrs[-2]
        new_lr = round_lr(lr / step if lr == lrs[0] else lr * step)
        lrs = sorted([*lrs, new_lr])
        missing = _missing([TrialSpec(name, new_lr, s, epochs) for s in seeds], done)
        if missing:
            return missing, None
    lr = best_lr(_runs(done, name, lrs, seeds, epochs), seeds, split)
    confirm = [TrialSpec(name, lr, s, epochs, "confirm") for s in spec.confirm_seeds if s not in seeds]
    return _missing(confirm, done), lr


def selected(spec: SweepSpec, done: Records) -> tuple[list[TrialSpec], dict[str, dict[float, float]]]:
    """The grid trials still needed, and each optimizer's selected LR per budget decided so far."""
    split = selection_split(done.values())
    pending: list[TrialSpec] = []
    chosen: dict[str, dict[float, float]] = {}
    for name in spec.optimizers:
        centre = None
        for b in spec.budgets:
            lrs = spec.lr_grid(name) if centre is None else sorted({round_lr(centre * f) for f in spec.budget_lr_factors})
            wanted, lr = sweep_budget(spec, done, name, lrs, spec.budget_epochs(b), split)
            pending += wanted
            if lr is None:
                break
            chosen.setdefault(name, {})[b] = centre = lr
    return pending, chosen


def budget_checks(spec: SweepSpec, done: Records, chosen: dict[str, dict[float, float]]) -> list[TrialSpec]:
    """Every seed at each optimizer's matched budget, rounded to whole epochs, where no budget has them."""
    seeds = spec.all_seeds()

    def mean_error(name: str, b: float) -> float:
        """Seed-mean final test error of `name` at its selected LR at budget `b`."""
        epochs = spec.budget_epochs(b)
        return statistics.mean(final_test_error(done[trial_key(name, chosen[name][b], s, epochs)]) for s in seeds)

    budgets = spec.budgets
    fractions = [spec.budget_epochs(b) / spec.epochs for b in budgets]
    target = mean_error(spec.target, 1.0)
    trials = []
    for name in spec.optimizers:
        if name == spec.target:
            continue
        match, relation = matched_budget(fractions, [mean_error(name, b) for b in budgets], target)
        if match is None or relation != "=":
            continue
        epochs = max(1, round(match * spec.epochs))
        if epochs in {spec.budget_epochs(b) for b in budgets}:
            continue
        nearest = min(budgets, key=lambda b: (abs(math.log(spec.budget_epochs(b) / epochs)), -b))
        trials += [TrialSpec(name, chosen[name][nearest], s, epochs, "budget") for s in seeds]
    return _missing(trials, done)


def pending_trials(spec: SweepSpec, done: Records) -> list[TrialSpec]:
    """Every trial the protocol can name now that has not finished (empty: the sweep is complete)."""
    pending, chosen = selected(spec, done)
    if pending or len(spec.budgets) < 2 or not spec.confirm_budget:
        return pending
    return budget_checks(spec, done, chosen)

