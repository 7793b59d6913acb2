"""Learning rate as a pure function of training progress, measured in epochs and counted in samples.

Progress is `epoch + samples / epoch_samples`: the samples every rank together consumed in the epoch before the
step, over the epoch's length in samples. Warmup and decay move every step (upstream changed the rate once per
epoch), and a run resumed at another batch size, accumulation or number of ranks continues exactly where the rate
was at that sample count (a step count, which changes meaning with the batch, once sent such runs to rate 0).
"""
from __future__ import annotations

import math


class LRSchedule:
    def __init__(self, cfg):
        self.base = cfg.lr
        self.kind = cfg.lr_schedule
        self.end_lr = cfg.end_lr
        self.warmup_lr = cfg.warmup_lr
        self.warmup = cfg.warmup
        self.steps = tuple(cfg.lr_steps)
        self.decay_rate = cfg.lr_decay_rate
        self.decay_epochs = cfg.lr_decay_epochs
        # timm trains --cooldown-epochs past the schedule's end at its final rate.
        self.epochs = cfg.lr_schedule_epochs or cfg.epochs

    def __call__(self, progress: float) -> float:
        """The rate at `progress` epochs into the run."""
        if progress < self.warmup:
            return self.warmup_lr + (self.base - self.warmup_lr) * progress / self.warmup
        if self.kind == "step":
            if self.decay_epochs:
                return self.base * self.decay_rate ** math.floor(progress / self.decay_epochs)
            return self.base * self.decay_rate ** sum(progress >= m for m in self.steps)
        done = min(1.0, (progress - self.warmup) / max(self.epochs - self.warmup, 1e-12))
        if self.kind == "linear":
            return self.end_lr + (self.base - self.end_lr) * (1.0 - done)
        if self.kind == "cosine":
            return self.end_lr + 0.5 * (1.0 + math.cos(math.pi * done)) * (self.base - self.end_lr)
        raise ValueError(f"unknown lr schedule {self.kind!r}")

    def apply(self, optimizer, progress: float) -> float:
        lr = self(progress)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
