"""Synthetic data: a fixed random batch, for measuring the model without the input pipeline.

Unlike upstream's, it ends (after `steps` batches) and its targets are real class indices."""
from __future__ import annotations

import torch


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
