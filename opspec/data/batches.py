"""One epoch's training batches, and each data-parallel rank's share of every batch.

The global batches depend only on (seed, epoch) — not on the number of ranks — so a run on N
processes sees the same batches as one process, and a resumed run replays them. Each global
batch is split into contiguous shares, one per rank; a rank whose share is empty (a last batch
smaller than the number of ranks) gets the batch's first sample with weight 0, so every rank runs
a forward and backward pass and the weighted sum over ranks is still the global batch's.

An in-memory dataset is shuffled sample by sample (torch's RandomSampler), except a full batch,
which comes in file order every epoch (full-batch training is then deterministic to the last bit
of its loss; SequentialSampler). An out-of-core one (full batches included) is
read in windows (docs/data.md): the stored blocks (chunks) are put in a random order, cut into
windows of about WINDOW_BYTES that hold a whole number of global batches, and each window's
samples are shuffled among themselves. One DataLoader item is one window: a worker reads this
rank's samples of it (one contiguous read per run), strides them in memory and gathers them, in
batch order, into one (a, u) pair, while the model trains on the previous window. Each share is a
slice (a view) of that pair, so a window crosses from a worker to the trainer as two tensors, not
two per batch, and the trainer copies nothing per step.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from opspec.data.dataset import OperatorDataset
from opspec.core.errors import OpspecError

Share = tuple[torch.Tensor, int, float]  # (this rank's indices, samples in the global batch, weight)
Window = tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, float]]]  # (a, u, [(rows, n_global, weight)])


class RankShares(Sampler[Share]):
    """For every global batch of `batches`, this rank's contiguous share of its indices."""

    def __init__(self, batches: BatchSampler, rank: int = 0, world_size: int = 1) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Share]:
        for batch in self.batches:
            yield rank_share(torch.as_tensor(batch), self.rank, self.world_size)


def rank_share(indices: torch.Tensor, rank: int, world_size: int) -> Share:
    """This rank's contiguous share of one global batch; an empty share is the first sample at weight 0."""
    mine = torch.tensor_split(indices, world_size)[rank]
    return (mine, len(indices), 1.0) if len(mine) else (indices[:1], len(indices), 0.0)


class SharedBatches(Dataset):
    """`dataset[share]` → (a, u, samples in the global batch, weight) for one rank's share."""

    def __init__(self, dataset: OperatorDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, share: Share) -> tuple[torch.Tensor, torch.Tensor, int, float]:
        indices, n_global, weight = share
        a, u = self.dataset[indices]
        return a, u, n_global, weight


WORKER_NICENESS = 10  # reading workers run at a lower priority than training (os.nice); the loaders' default
WINDOW_BYTES = 64 * 2**20  # stored bytes of one out-of-core window (a worker holds one while it strides it)


def epoch_windows(blocks: list[tuple[int, int]], batch_size: int, seed: int, epoch: int,
                  window_samples: int) -> list[torch.Tensor]:
    """One epoch's sample order as windows: blocks in a random order, cut into windows of a whole
    number of batches (about `window_samples`), each window shuffled. Depends only on (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(blocks), generator=generator).tolist()
    sequence = torch.cat([torch.arange(*blocks[b]) for b in order]) if blocks else torch.zeros(0, dtype=torch.long)
    size = max(1, round(window_samples / batch_size)) * batch_size
    return [w[torch.randperm(len(w), generator=generator)] for w in torch.split(sequence, size)]


class WindowShares(Dataset):
    """`windows[i]` → this rank's shares of the global batches in window i, read with one read per run:
    (a, u) with the shares one after another, and each share's (rows, samples in the global batch, weight)."""

    def __init__(self, dataset: OperatorDataset, windows: list[torch.Tensor], batch_size: int, rank: int,
                 world_size: int) -> None:
        self.dataset, self.windows, self.batch_size = dataset, windows, batch_size
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> Window:
        shares = [rank_share(batch, self.rank, self.world_size) for batch in torch.split(self.windows[i], self.batch_size)]
        order = torch.cat([indices for indices, _, _ in shares]).numpy()
        needed = np.unique(order)
        a, u = self.dataset.read_sorted(needed)
        where = torch.from_numpy(np.searchsorted(needed, order))
        a, u = torch.from_numpy(a)[where], torch.from_numpy(u)[where]  # one gather each, in batch order
        return a, u, [(len(indices), n_global, weight) for indices, n_global, weight in shares]


def _background(niceness: int, worker_id: int) -> None:
    """A reading worker yields the CPU to the training process: it only has to stay a window ahead, and on a
    busy machine a worker taking a core from the model's threads stalls them at every parallel region."""
    os.nice(niceness)


class WindowedLoader:
    """Iterates a DataLoader of windows as the (a, u, samples in the global batch, weight) shares they hold:
    each share's a and u are consecutive rows (views) of its window's, so shares never overlap."""

    def __init__(self, loader: DataLoader, n_batches: int) -> None:
        self.loader, self.n_batches = loader, n_batches

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, float]]:
        try:
            for a, u, shares in self.loader:
                start = 0
                for rows, n_global, weight in shares:
                    yield a[start : start + rows], u[start : start + rows], n_global, weight
                    start += rows
        except OpspecError as err:  # raised in a worker: torch adds its traceback; keep the one line
            lines = str(err).strip().splitlines()
            if len(lines) > 1 and lines[-1].startswith("opspec.core.errors.OpspecError: "):
                raise OpspecError(lines[-1].split(": ", 1)[1]) from None
            raise


def out_of_core_loader(dataset: OperatorDataset, batch_size: int, seed: int, epoch: int, num_workers: int = 0,
                       rank: int = 0, world_size: int = 1, window_bytes: int | None = None,
                       worker_niceness: int | None = None) -> WindowedLoader:
    """This rank's shares of one epoch's global batches, read window by window (module docstring).

    With workers, worker w reads windows w, w + W, … with its own HDF5 handle and the DataLoader
    hands them over in order, prefetch_factor windows ahead; memory stays at a few windows. Each
    worker lowers its priority by `worker_niceness` (os.nice; default WORKER_NICENESS).
    """
    dataset.warn_if_slow()
    sample_bytes = max(1, dataset.file.sample_bytes(dataset.split))
    window_bytes = WINDOW_BYTES if window_bytes is None else window_bytes
    niceness = WORKER_NICENESS if worker_niceness is None else worker_niceness
    windows = epoch_windows(dataset.blocks(), batch_size, seed, epoch, max(batch_size, window_bytes // sample_bytes))
    loader = DataLoader(WindowShares(dataset, windows, batch_size, rank, world_size), batch_size=None, shuffle=False,
                        num_workers=num_workers, worker_init_fn=partial(_background, niceness) if num_workers else None)
    return WindowedLoader(loader, sum(-(-len(w) // batch_size) for w in windows))


def epoch_loader(dataset: OperatorDataset, batch_size: int, seed: int, epoch: int, num_workers: int = 0,
                 rank: int = 0, world_size: int = 1, worker_niceness: int | None = None) -> DataLoader | WindowedLoader:
    """This rank's share of one epoch's shuffled global batches of `batch_size` samples (in memory, a full
    batch comes in file order).

    The order depends only on (seed, epoch). In memory, the dataset is indexed with a whole share
    at once (batch_size=None), so there is no per-sample collation; out of core, windows of
    blocks are read ahead (out_of_core_loader, whose workers take `worker_niceness`).
    """
    if not dataset.in_memory:
        return out_of_core_loader(dataset, batch_size, seed, epoch, num_workers, rank, world_size,
                                  worker_niceness=worker_niceness)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    # A full batch has no order to draw: it is summed in the file's order, the same every epoch, so
    # full-batch training is deterministic down to the loss's rounding (its runs are that sensitive).
    order = SequentialSampler(dataset) if batch_size >= len(dataset) else RandomSampler(dataset, generator=generator)
    batches = BatchSampler(order, batch_size=batch_size, drop_last=False)
    return DataLoader(SharedBatches(dataset), sampler=RankShares(batches, rank, world_size), batch_size=None,
                      num_workers=num_workers, generator=generator)
