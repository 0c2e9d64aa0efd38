"""Models built from the config: FNO (neuraloperator's), wrapped with its normalizers."""

from __future__ import annotations

from typing import Any

from torch import nn

from opspec.models.fno import build_fno
from opspec.models.normalized import NormalizedOperator

__all__ = ["NormalizedOperator", "build_fno", "build_model"]


def build_model(cfg: Any, in_channels: int, out_channels: int) -> nn.Module:
    """The model named by `cfg.name` with the data's channel counts."""
    if cfg.name == "fno":
        return build_fno(cfg, in_channels, out_channels)
    raise ValueError(f"model.name={cfg.name!r}: expected 'fno'")
