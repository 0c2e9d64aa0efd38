"""A model wrapped with its input and output normalizers, so it maps raw a to raw u at any resolution."""

from __future__ import annotations

import torch
from torch import nn


class NormalizedOperator(nn.Module):
    """u = out_norm.decode(model(in_norm.encode(a))): the normalizers travel with the weights."""

    def __init__(self, model: nn.Module, in_norm: nn.Module, out_norm: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.in_norm = in_norm
        self.out_norm = out_norm

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.out_norm.decode(self.model(self.in_norm.encode(a)))
