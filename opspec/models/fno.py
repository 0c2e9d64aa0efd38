"""neuraloperator 2.0's FNO built from opspec's model config (`model.options` passes any other FNO keyword)."""

from __future__ import annotations

from typing import Any

from torch import nn

from opspec.models.zoo import build_neuralop


def build_fno(cfg: Any, in_channels: int, out_channels: int) -> nn.Module:
    """An FNO with the config's modes, width, depth and options; its spectral weights are complex64 per-mode tensors."""
    return build_neuralop("fno", cfg, in_channels, out_channels, len(cfg.n_modes))
