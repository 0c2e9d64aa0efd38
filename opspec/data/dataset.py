"""A torch Dataset over one split of a canonical file at any strided resolution, and its normalizer."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch import nn

from opspec.data.canonical import CanonicalFile


def _with_channel(data: np.ndarray, n_space: int) -> np.ndarray:
    """Give (n, *space) data an explicit channel axis: (n, 1, *space); leave (n, c, *space) alone."""
    return data[:, None] if data.ndim == n_space + 1 else data.reshape(data.shape[0], -1, *data.shape[-n_space:])


class OperatorDataset(torch.utils.data.Dataset):
    """Pairs (a, u) of one split as float32 tensors (channel, *space) at a strided resolution.

    `in_memory=True` reads the strided split once (one pass over the file; only the strided
    points are kept), which makes a training epoch cost next to nothing in data access.
    `in_memory=False` reads each requested sample from the file on demand.
    Indexing with a list or tensor of indices returns a whole batch, so a `BatchSampler` with
    `batch_size=None` in the DataLoader skips per-sample collation.
    """

    def __init__(
        self,
        file: CanonicalFile | str | os.PathLike,
        split: str,
        resolution: int | None = None,
        *,
        in_memory: bool = True,
        n: int | None = None,
    ) -> None:
        self.file = file if isinstance(file, CanonicalFile) else CanonicalFile(file)
        self.split = split
        self.resolution = resolution or self.file.grid_size
        self.file.stride(self.resolution)
        total = self.file.n_samples(split)
        self.n = total if n is None else min(n, total)
        self.n_space = len(self.file.space_dims)
        self._a: torch.Tensor | None = None
        self._u: torch.Tensor | None = None
        if in_memory:
            self._a = torch.from_numpy(self._read("a", slice(0, self.n)))
            self._u = torch.from_numpy(self._read("u", slice(0, self.n)))

    def _read(self, var: str, samples: slice) -> np.ndarray:
        data = self.file.read(self.split, var, self.resolution, samples)
        return np.ascontiguousarray(_with_channel(data, self.n_space))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int | Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._a is not None and self._u is not None:
            return self._a[index], self._u[index]
        if isinstance(index, (int, np.integer)):
            sl = slice(int(index), int(index) + 1)
            return torch.from_numpy(self._read("a", sl))[0], torch.from_numpy(self._read("u", sl))[0]
        items = [self[int(i)] for i in index]
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


class UnitGaussianNormalizer(nn.Module):
    """x ↦ (x − mean) / (std + eps) with one mean and std per channel, so it fits every resolution."""

    def __init__(self, n_channels: int = 1, n_space: int = 2, eps: float = 1e-6) -> None:
        super().__init__()
        shape = (1, n_channels) + (1,) * n_space
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.eps = eps

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / (self.std + self.eps)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.std + self.eps) + self.mean


def fit_normalizer(dataset: OperatorDataset, var: str, block: int = 256) -> UnitGaussianNormalizer:
    """Per-channel mean and std of `a` or `u` over the dataset's samples and grid (float64 sums)."""
    total = sq = None
    count = 0
    for start in range(0, len(dataset), block):
        idx = list(range(start, min(start + block, len(dataset))))
        a, u = dataset[idx]
        x = (a if var == "a" else u).double()
        dims = [0] + list(range(2, x.ndim))
        total = x.sum(dims) if total is None else total + x.sum(dims)
        sq = (x * x).sum(dims) if sq is None else sq + (x * x).sum(dims)
        count += x.numel() // x.shape[1]
    assert total is not None and sq is not None
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    norm = UnitGaussianNormalizer(n_channels=mean.numel(), n_space=dataset.n_space)
    norm.mean.copy_(mean.view_as(norm.mean).float())
    norm.std.copy_(std.view_as(norm.std).float())
    return norm
