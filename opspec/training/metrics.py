"""Relative L2 error per sample (DESIGN §4): the metric every table in opspec reports."""

from __future__ import annotations

import torch


def relative_l2(pred: torch.Tensor, true: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """‖pred − true‖₂ / ‖true‖₂ per sample, over every axis after the first (channels, time, space).

    Returns a tensor of shape (batch,). Equals neuraloperator's `LpLoss(p=2)` per sample for one
    channel; the grid-spacing factor cancels in the ratio, so it is resolution-independent.
    """
    if pred.shape != true.shape:
        raise ValueError(f"relative_l2: shapes differ, pred {tuple(pred.shape)} vs true {tuple(true.shape)}")
    diff = (pred - true).flatten(1).norm(dim=1)
    ref = true.flatten(1).norm(dim=1)
    return diff / (ref + eps)
