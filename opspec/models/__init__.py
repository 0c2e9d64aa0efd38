"""Models built from the config: FNO (neuraloperator's) or DeepONet (ours), wrapped with its normalizers."""

from __future__ import annotations

from typing import Any

from torch import nn

from opspec.errors import OpspecError

from opspec.models.deeponet import DeepONet, build_deeponet
from opspec.models.fno import build_fno
from opspec.models.normalized import NormalizedOperator

__all__ = ["DeepONet", "NormalizedOperator", "build_deeponet", "build_fno", "build_model"]


def build_model(
    cfg: Any, in_channels: int, out_channels: int, n_space: int | None = None, grid: str = "nodal"
) -> nn.Module:
    """The model named by `cfg.name` for the data's channel counts, spatial dimensions and grid kind."""
    if cfg.name == "fno":
        if n_space is not None and len(cfg.n_modes) != n_space:
            raise OpspecError(
                f"model.n_modes={list(cfg.n_modes)}: {len(cfg.n_modes)} entries, but the data has {n_space} "
                "spatial dimension(s); give one mode count per axis"
            )
        return build_fno(cfg, in_channels, out_channels)
    if cfg.name == "deeponet":
        if n_space is None:
            raise ValueError("model.name='deeponet' needs the data's number of spatial dimensions (n_space)")
        return build_deeponet(cfg, in_channels, out_channels, n_space, periodic=grid == "periodic")
    raise ValueError(f"model.name={cfg.name!r}: expected 'fno' or 'deeponet'")
