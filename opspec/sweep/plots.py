"""The analysis's figures: learning curves at the selected LRs, and error against training budget."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from opspec.sweep.stats import ci95  # noqa: E402
from opspec.training.plots import save_png  # noqa: E402

Best = dict[str, tuple[float, list[dict[str, Any]]]]


def plot_curves(best: Best, path: Path, target: float | None) -> None:
    """Test relative L2 per epoch at each optimizer's selected LR: seed mean, the 95% interval shaded."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, (lr, runs) in best.items():
        if not runs:
            continue
        curves = list(zip(*(r["curve"] for r in runs)))
        epochs = range(1, len(curves) + 1)
        means = [statistics.mean(c) for c in curves]
        line, = ax.plot(epochs, means, label=f"{name} (lr {lr:g})")
        if len(runs) > 1:
            half = [ci95(list(c)) for c in curves]
            ax.fill_between(epochs, [m - h for m, h in zip(means, half)], [m + h for m, h in zip(means, half)],
                            color=line.get_color(), alpha=0.2)
    if target is not None:
        ax.axhline(target, color="gray", ls=":", lw=1, label="target's final")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test relative L2 (training resolution)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path)


def plot_budgets(per_opt: dict[str, dict[float, tuple[float, list[dict[str, Any]]]]], budgets: list[float],
                 train_res: str, target: float, path: Path) -> None:
    """Final test error against training budget, log-log: seed mean with 95% intervals as error bars."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = sorted(budgets)
    for name, chosen in per_opt.items():
        vals = [[r["final"][train_res] for r in chosen[b][1]] for b in xs]
        ax.errorbar(xs, [statistics.mean(v) for v in vals], yerr=[ci95(v) for v in vals], marker="o", capsize=3, label=name)
    ax.axhline(target, color="gray", ls=":", lw=1, label="target, full budget")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{b:.3g}" for b in xs])
    ax.set_xlabel("training budget (fraction of the full schedule)")
    ax.set_ylabel(f"final test relative L2 at {train_res}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path)
