"""Models built from the config: neuraloperator's (FNO, TFNO, UNO, CODANO, …) or DeepONet (ours), wrapped with its normalizers."""

from __future__ import annotations

from typing import Any

from torch import nn

from opspec.core.errors import OpspecError

from opspec.models.deeponet import DeepONet, build_deeponet
from opspec.models.fno import build_fno
from opspec.models.labels import ParameterLabel, model_labels
from opspec.models.normalized import NormalizedOperator
from opspec.models.zoo import MODELS, NEURALOP_MODELS, build_neuralop, model_keywords

MODEL_NAMES = (*NEURALOP_MODELS, "deeponet")

__all__ = ["DeepONet", "MODELS", "MODEL_NAMES", "NormalizedOperator", "ParameterLabel", "build_deeponet", "build_fno",
           "build_model", "build_neuralop", "model_keywords", "model_labels"]


def build_model(
    cfg: Any, in_channels: int, out_channels: int, n_space: int | None = None, grid: str = "nodal"
) -> nn.Module:
    """The model named by `cfg.name` for the data's channel counts, spatial dimensions and grid kind."""
    if cfg.name in NEURALOP_MODELS:
        if n_space is not None and len(cfg.n_modes) != n_space:
            raise OpspecError(
                f"model.n_modes={list(cfg.n_modes)}: {len(cfg.n_modes)} entries, but the data has {n_space} "
                "spatial dimension(s); give one mode count per axis"
            )
        return build_neuralop(cfg.name, cfg, in_channels, out_channels, len(cfg.n_modes))
    if cfg.name == "deeponet":
        if n_space is None:
            raise ValueError("model.name='deeponet' needs the data's number of spatial dimensions (n_space)")
        options = cfg.get("options", None) or {}
        if options:
            raise OpspecError(f"model.options.{next(iter(options))}: DeepONet takes only the model.* keys (sensors, widths, depth, basis)")
        return build_deeponet(cfg, in_channels, out_channels, n_space, periodic=grid == "periodic")
    raise OpspecError(f"model.name={cfg.name!r}: expected one of {list(MODEL_NAMES)}")
