"""Synthetic data: a fixed random batch, for measuring the model without the input pipeline.

Unlike upstream's, it ends (after `steps` batches) and its targets are real class indices."""
from __future__ import annotations

import torch

from .bundle import DataBundle
from .config import DataConfig


class SyntheticLoader:
    def __init__(self, batch_size: int, image_size: int, num_classes: int, steps: int, device: torch.device,
                 memory_format=torch.contiguous_format, seed: int = 0):
        if steps < 1:
            raise ValueError(f"synthetic data needs at least one step, got {steps}")
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(batch_size, 3, image_size, image_size, generator=g).to(device)
        self.images = self.images.contiguous(memory_format=memory_format)
        self.targets = torch.randint(0, num_classes, (batch_size,), generator=g).to(device)
        self.steps = steps
        self.skipped: list = []
        self.sampler = None

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield self.images, self.targets


def build_synthetic_data(cfg: DataConfig, *, image_size: int, val_image_size: int, crop_pct: float, mean, std,
                         device: torch.device, memory_format: str, seed: int | None, num_classes: int | None, flag,
                         rank: int = 0, world_size: int = 1, need_train: bool = True,
                         need_val: bool = True) -> DataBundle:
    """`--data-backend synthetic`: reads no folder, so the class count is the model's (1000 when not given)."""
    layout = torch.channels_last if memory_format == "nhwc" else torch.contiguous_format
    n = num_classes or 1000

    def make(size):
        return SyntheticLoader(cfg.batch_size, size, n, cfg.synthetic_steps, device, layout, seed=seed or 0)

    return DataBundle(make(image_size) if need_train else None, make(val_image_size) if need_val else None, n, None)
