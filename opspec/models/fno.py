"""neuraloperator 2.0's FNO built from opspec's model config."""

from __future__ import annotations

from typing import Any

from neuralop.models import FNO


def build_fno(cfg: Any, in_channels: int, out_channels: int) -> FNO:
    """An FNO with the config's modes, width and depth; its spectral weights are complex64 per-mode tensors."""
    return FNO(
        n_modes=tuple(int(m) for m in cfg.n_modes),
        in_channels=in_channels,
        out_channels=out_channels,
        hidden_channels=int(cfg.hidden_channels),
        n_layers=int(cfg.n_layers),
        lifting_channel_ratio=int(cfg.lifting_channel_ratio),
        projection_channel_ratio=int(cfg.projection_channel_ratio),
    )

