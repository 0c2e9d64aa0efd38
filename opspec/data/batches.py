"""One epoch's training batches, and each data-parallel rank's share of every batch.

The global batches depend only on (seed, epoch) — not on the number of ranks — so a run on N
processes sees the same batches as one process, and a resumed run replays them. Each global
batch is split into contiguous shares, one per rank; a rank whose share is empty (a last batch
smaller than the number of ranks) gets the batch's first sample with weight 0, so every rank runs
a forward and backward pass and the weighted sum over ranks is still the global batch's.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from opspec.data.dataset import OperatorDataset

Share = tuple[torch.Tensor, int, float]  # (this rank's indices, samples in the global batch, weight)


class RankShares(Sampler[Share]):
    """For every global batch of `batches`, this rank's contiguous share of its indices."""

    def __init__(self, batches: BatchSampler, rank: int = 0, world_size: int = 1) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Share]:
        for batch in self.batches:
            indices = torch.as_tensor(batch)
            mine = torch.tensor_split(indices, self.world_size)[self.rank]
            yield (mine, len(indices), 1.0) if len(mine) else (indices[:1], len(indices), 0.0)


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


def epoch_loader(dataset: OperatorDataset, batch_size: int, seed: int, epoch: int, num_workers: int = 0,
                 rank: int = 0, world_size: int = 1) -> DataLoader:
    """This rank's share of one epoch's shuffled global batches of `batch_size` samples.

    The order depends only on (seed, epoch). The dataset is indexed with a whole share at once
    (batch_size=None), so there is no per-sample collation.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size=batch_size, drop_last=False)
    return DataLoader(SharedBatches(dataset), sampler=RankShares(batches, rank, world_size), batch_size=None,
                      num_workers=num_workers, generator=generator)
