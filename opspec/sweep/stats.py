"""Numbers across seeds and budgets: mean with a Student-t 95% interval, the log-log matched budget."""

from __future__ import annotations

import math
import statistics

from scipy.stats import t as student_t


def ci95(values: list[float]) -> float:
    """Half-width of the two-sided 95% Student-t confidence interval of the mean (0 for one value)."""
    if len(values) < 2:
        return 0.0
    return float(student_t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def mean_ci(values: list[float]) -> str:
    """"mean ± CI" (the 95% half-width), or the value alone for one seed."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {ci95(values):.4f}"


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
            b_prev, e_prev = points[i - 1]
            t = (math.log(e_prev) - math.log(target)) / (math.log(e_prev) - math.log(e))
            return math.exp(math.log(b_prev) + t * (math.log(b) - math.log(b_prev))), "="
    return None, ">"


def budget_text(match: tuple[float | None, str], top: float) -> str:
    """A matched budget for a table: "0.60", "≤ 0.25" or "> 1"."""
    b, rel = match
    if b is None:
        return f"> {top:g}"
    return f"{'≤ ' if rel == '≤' else ''}{b:.2f}"
