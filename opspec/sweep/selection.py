"""Choosing among trials: the split selection reads (validation where recorded), the best LR, edge marks.

The protocol (issue 22): the LR and the reported runs are chosen on validation error only; test error
is reported once, for the chosen runs. Runs written before opspec recorded `val_rel_l2` have no
validation curve: selection then falls back to the test split, and every table says so.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable

VALIDATION = "validation"
TEST_FALLBACK = "test (no validation records)"


def selection_split(records: Iterable[dict[str, Any]]) -> str:
    """VALIDATION when every trained record has a validation curve, else TEST_FALLBACK."""
    trained = [r for r in records if "diverged" not in r]
    return VALIDATION if trained and all(r.get("val_curve") for r in trained) else TEST_FALLBACK


def final_test_error(record: dict[str, Any]) -> float:
    """The final test error at the training resolution (inf for a diverged trial)."""
    if "diverged" in record:
        return math.inf
    return record["final"][str(record["train_resolution"])]


def score(record: dict[str, Any], split: str) -> float:
    """What selection minimizes: the last validation error, or the final test error as the fallback."""
    if "diverged" in record:
        return math.inf
    return record["val_curve"][-1] if split == VALIDATION else final_test_error(record)


def best_lr(runs: list[dict[str, Any]], seeds: Iterable[int], split: str) -> float:
    """The LR with the lowest seed-mean score over `seeds` (a diverged seed makes its LR's mean inf)."""
    wanted = set(seeds)
    by_lr: dict[float, list[float]] = {}
    for r in runs:
        if r["seed"] in wanted:
            by_lr.setdefault(r["lr"], []).append(score(r, split))
    return min(by_lr, key=lambda lr: statistics.mean(by_lr[lr]))


def edge_mark(lr: float, swept: Iterable[float]) -> str:
    """" (edge)" when the chosen LR is the smallest or largest of several swept: the best may lie beyond."""
    lrs = sorted(set(swept))
    return " (edge)" if len(lrs) > 1 and lr in (lrs[0], lrs[-1]) else ""
