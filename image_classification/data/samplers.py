"""Samplers that shard by rank, know their epoch, and can start mid-epoch (for exact resume)."""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ShardSampler(Sampler):
    """Yields (epoch, index) pairs for this rank.

    train (shuffle=True): a permutation seeded by (seed, epoch), padded by wrapping so every rank gets the same
    number of samples (DDP needs equal step counts).
    val (shuffle=False): indices rank::world with no padding, so across ranks every image is seen exactly once
    (upstream's DistributedSampler padded and counted duplicates; single-GPU upstream validation even shuffled).
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """`start` skips that many samples of the epoch's global order: the ones every rank together consumed before
        an interruption. Counting them globally, not per rank, lets a run resume on another number of ranks or
        batch size and read exactly the images the interrupted one had not read yet."""
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.rank, self.size, self.world_size))[self.start // self.world_size:]
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        rest = order[self.start:]
        # Wrap around so every rank gets the same number of samples (DDP needs equal step counts).
        rest += order[: -len(rest) % self.world_size]
        return rest[self.rank :: self.world_size]

    def __iter__(self):
        for index in self._indices():
            yield (self.epoch, index)

    def __len__(self) -> int:
        if not self.shuffle:
            return len(range(self.rank, self.size, self.world_size)) - self.start // self.world_size
        return -(-(self.size - self.start) // self.world_size)
