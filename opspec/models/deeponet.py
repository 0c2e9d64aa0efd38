"""DeepONet: a branch net over the input at fixed sensors, a trunk net over the query grid, joined by an einsum.

out[b, c, q] = Σ_k branch(a_b at the sensors)[c, k] · trunk(x_q)[c, k] + bias_c, with p basis
functions per output channel. The branch always sees the input resampled to the same sensor grid
and the trunk can be evaluated at any coordinates, so a model trained at one resolution is
evaluated at others. Every weight is an `nn.Linear` (a 2-D matrix), which the spectral optimizers
orthogonalize as it is; GELU keeps the trunk's basis functions smooth in x and does not saturate.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from opspec.core.grids import points

MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def mlp(sizes: list[int], last_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes with GELU between them (and after the last when asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def grid_coords(shape: tuple[int, ...], periodic: bool, device: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(Q, d) coordinates of a grid on [0, 1]^d in row-major order: x_i = i/(s−1) nodal, i/s periodic."""
    return torch.as_tensor(points(tuple(shape), "periodic" if periodic else "nodal"), dtype=dtype, device=device)


def resample(x: torch.Tensor, size: int, periodic: bool) -> torch.Tensor:
    """x (B, C, *space) linearly interpolated to `size` points per axis of the same grid kind.

    Nodal grids: `interpolate(..., align_corners=True)`, so both ends stay on 0 and 1. Periodic
    grids: the first point is appended at x = 1 (circular pad), which makes a nodal grid of s + 1
    points on [0, 1]; that is resampled to size + 1 points and the duplicate end dropped, i.e.
    linear interpolation with wrap-around. Sensors that are grid points read their values exactly.
    """
    d = x.ndim - 2
    if all(s == size for s in x.shape[2:]):
        return x
    if not periodic:
        return F.interpolate(x, size=(size,) * d, mode=MODES[d], align_corners=True)
    wrapped = F.pad(x, (0, 1) * d, mode="circular")
    out = F.interpolate(wrapped, size=(size + 1,) * d, mode=MODES[d], align_corners=True)
    return out[(..., *(slice(0, size),) * d)]


class DeepONet(nn.Module):
    """Branch MLP on the flattened sensor values, trunk MLP on coordinates, p basis functions per channel.

    The 2-D branch is also an MLP on the flattened sensors (not a CNN): one code path for every
    dimension, and every weight a plain matrix for the spectral optimizers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_space: int,
        sensors: int = 33,
        branch_width: int = 128,
        trunk_width: int = 128,
        depth: int = 3,
        basis: int = 64,
        periodic: bool = False,
    ) -> None:
        super().__init__()
        if n_space not in MODES:
            raise ValueError(f"DeepONet: n_space={n_space}, expected 1, 2 or 3")
        if sensors < 2:
            raise ValueError(f"DeepONet: sensors={sensors}, expected at least 2 per axis")
        self.in_channels, self.out_channels, self.n_space = in_channels, out_channels, n_space
        self.sensors, self.basis, self.periodic = sensors, basis, periodic
        width_out = out_channels * basis
        self.branch = mlp([in_channels * sensors**n_space, *[branch_width] * depth, width_out])
        self.trunk = mlp([n_space, *[trunk_width] * depth, width_out], last_activation=True)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """a (B, C_in, *space) → u (B, C_out, *space) on the same grid as a."""
        space = tuple(a.shape[2:])
        if len(space) != self.n_space or a.shape[1] != self.in_channels:
            raise ValueError(
                f"DeepONet: input of shape {tuple(a.shape)}, expected (batch, {self.in_channels}, "
                f"{self.n_space} spatial axes)"
            )
        sensed = rearrange(resample(a, self.sensors, self.periodic), "b c ... -> b (c ...)")
        coef = rearrange(self.branch(sensed), "b (c k) -> b c k", c=self.out_channels)
        x = grid_coords(space, self.periodic, a.device, a.dtype)
        phi = rearrange(self.trunk(x), "q (c k) -> q c k", c=self.out_channels)
        out = torch.einsum("bck,qck->bcq", coef, phi) + self.bias[:, None]
        return out.reshape(*out.shape[:2], *space)


def build_deeponet(cfg: Any, in_channels: int, out_channels: int, n_space: int, periodic: bool = False) -> DeepONet:
    """A DeepONet with the config's sensors, widths, depth and basis size for this data's shapes."""
    return DeepONet(
        in_channels,
        out_channels,
        n_space,
        sensors=int(cfg.sensors),
        branch_width=int(cfg.branch_width),
        trunk_width=int(cfg.trunk_width),
        depth=int(cfg.depth),
        basis=int(cfg.basis),
        periodic=periodic,
    )
