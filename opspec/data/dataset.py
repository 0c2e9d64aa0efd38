"""A torch Dataset over one split of canonical data (a file or a set of files) at a strided resolution, and its normalizer."""

from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np
import torch
from torch import nn

from opspec.data.canonical import CanonicalFile, Resolution
from opspec.data.multifile import CanonicalSet, open_data

_WARNED: set[tuple[str, str]] = set()


def _with_channel(data: np.ndarray, n_space: int) -> np.ndarray:
    """Give (n, *space) data an explicit channel axis: (n, 1, *space); (n, c…, *space) becomes (n, Πc, *space)."""
    if data.ndim == n_space + 1:
        return data[:, None]
    return data.reshape(data.shape[0], int(np.prod(data.shape[1:-n_space])), *data.shape[-n_space:])


def runs(indices: np.ndarray) -> list[slice]:
    """Sorted distinct indices as slices of consecutive ones: one contiguous read each."""
    if len(indices) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(indices)]])
    return [slice(int(indices[a]), int(indices[b - 1]) + 1) for a, b in zip(starts, stops)]


class OperatorDataset(torch.utils.data.Dataset):
    """Pairs (a, u) of one split as float32 tensors (channel, *space) at a strided resolution.

    `in_memory=True` reads the strided split once (contiguous blocks, strided in memory; only the
    strided points are kept), which makes a training epoch cost next to nothing in data access.
    `in_memory=False` reads on demand: a batch of indices is read as one contiguous read per run of
    consecutive samples (the out-of-core loader in batches.py asks for whole blocks), then strided.
    Indexing with a list or tensor of indices returns a whole batch, so a `BatchSampler` with
    `batch_size=None` in the DataLoader skips per-sample collation. `indices` (sorted, distinct)
    makes the dataset those samples of the split only (a training part or a held-out validation
    part, opspec/data/holdout.py): sample i is the split's sample indices[i].
    """

    def __init__(
        self,
        file: CanonicalFile | CanonicalSet | str | os.PathLike,
        split: str,
        resolution: Resolution = None,
        *,
        in_memory: bool = True,
        n: int | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.file = file if isinstance(file, (CanonicalFile, CanonicalSet)) else open_data(file)
        self.split = split
        self.resolution = resolution
        self.points = self.file.points(resolution)
        total = self.file.n_samples(split)
        self.indices: np.ndarray | None = None
        if indices is not None:
            self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
            if len(self.indices) and (self.indices[0] < 0 or self.indices[-1] >= total or np.any(np.diff(self.indices) <= 0)):
                raise ValueError(f"indices: expected sorted distinct sample indices in [0, {total}) of split {split!r}")
            total = len(self.indices)
        self.n = total if n is None else min(n, total)
        self.n_space = len(self.file.space_dims)
        self.in_memory = in_memory
        self._a: torch.Tensor | None = None
        self._u: torch.Tensor | None = None
        if in_memory and self.indices is None:
            self._a = torch.from_numpy(self._read("a", slice(0, self.n)))
            self._u = torch.from_numpy(self._read("u", slice(0, self.n)))
        elif in_memory:
            a, u = self.read_sorted(np.arange(self.n))
            self._a, self._u = torch.from_numpy(a), torch.from_numpy(u)

    def warn_if_slow(self) -> None:
        """Print, once per file and split, why the file's chunks make out-of-core reads slow and the fix."""
        warning = self.file.chunking_warning(self.split)
        if warning and (str(self.file.path), self.split) not in _WARNED:
            _WARNED.add((str(self.file.path), self.split))
            print(f"warning: {warning}", file=sys.stderr, flush=True)

    def _read(self, var: str, samples: slice) -> np.ndarray:
        data = self.file.read(self.split, var, self.resolution, samples)
        return np.ascontiguousarray(_with_channel(data, self.n_space))

    def __len__(self) -> int:
        return self.n

    def blocks(self) -> list[tuple[int, int]]:
        """The stored chunks' sample ranges within this dataset's first n samples (with `indices`: the
        ranges of this dataset's samples that each chunk holds)."""
        if self.indices is None:
            return [(lo, min(hi, self.n)) for lo, hi in self.file.blocks(self.split) if lo < self.n]
        mine = self.indices[: self.n]
        ranges = [(int(np.searchsorted(mine, lo)), int(np.searchsorted(mine, hi))) for lo, hi in self.file.blocks(self.split)]
        return [(lo, hi) for lo, hi in ranges if lo < hi]

    def read_sorted(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, u) for sorted distinct indices: one contiguous read per run, then strided in memory,
        each run's strided rows written straight into their place in the result (no concatenation)."""
        if len(indices) and (indices[0] < 0 or indices[-1] >= self.n):
            raise IndexError(f"indices {indices[0]}..{indices[-1]} out of range for {self.n} samples")
        if self.indices is not None:
            indices = self.indices[indices]
        pieces = runs(indices)
        if len(pieces) <= 1:
            sl = pieces[0] if pieces else slice(0, 0)
            return self._read("a", sl), self._read("u", sl)
        out: dict[str, np.ndarray] = {}
        start = 0
        for sl in pieces:
            for var in ("a", "u"):
                part = self._read(var, sl)
                if var not in out:
                    out[var] = np.empty((len(indices), *part.shape[1:]), dtype=part.dtype)
                out[var][start : start + len(part)] = part
            start += sl.stop - sl.start
        return out["a"], out["u"]

    def __getitem__(self, index: int | Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._a is not None and self._u is not None:
            return self._a[index], self._u[index]
        if isinstance(index, (int, np.integer)):
            index = int(index) + (self.n if index < 0 else 0)
            a, u = self.read_sorted(np.array([index]))
            return torch.from_numpy(a)[0], torch.from_numpy(u)[0]
        wanted = np.asarray(index, dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(wanted, return_inverse=True)
        a, u = self.read_sorted(unique)
        if len(unique) != len(wanted) or not np.array_equal(unique, wanted):
            a, u = a[inverse], u[inverse]
        return torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(u))


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
