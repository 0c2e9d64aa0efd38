"""Learning curves of a run, read from its metrics.jsonl."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from opspec.training.checkpoint import read_metrics
from opspec.core.fileio import atomic_path


def plot_curves(metrics: str | os.PathLike, out: str | os.PathLike) -> Path:
    """PNG of training loss, validation (when recorded) and test relative L2 per epoch (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics)
    epochs = [r["epoch"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(epochs, [r["train_loss"] for r in records], label="train rel L2 (batch mean)")
    if records and all("val_rel_l2" in r for r in records):
        ax.semilogy(epochs, [r["val_rel_l2"] for r in records], label="validation rel L2 (best.pt's choice)")
    ax.semilogy(epochs, [r["test_rel_l2"] for r in records], label="test rel L2 (train resolution)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("relative L2")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(Path(metrics).parent.name)
    return save_png(fig, out)


def save_png(fig: Any, out: str | os.PathLike) -> Path:
    """Write a matplotlib figure as a PNG atomically (no half-written file at `out`), then close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
    return out
