"""Learning rate as a pure function of the global iteration: warmup and decay move every step, not every epoch
(upstream changed the rate once per epoch), and resuming needs nothing but the step count."""
from __future__ import annotations

import math


class LRSchedule:
    def __init__(self, cfg, iters_per_epoch: int):
        self.base = cfg.lr
        self.kind = cfg.lr_schedule
        self.end_lr = cfg.end_lr
        self.warmup_lr = cfg.warmup_lr
        self.steps = tuple(cfg.lr_steps)
        self.decay_rate = cfg.lr_decay_rate
        self.decay_epochs = cfg.lr_decay_epochs
        # timm trains --cooldown-epochs past the schedule's end at its final rate.
        self.epochs = cfg.lr_schedule_epochs or cfg.epochs
        self.iters = max(1, iters_per_epoch)
        self.warmup_iters = int(round(cfg.warmup * self.iters))

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            return self.warmup_lr + (self.base - self.warmup_lr) * (step + 1) / self.warmup_iters
        epoch = step / self.iters
        if self.kind == "step":
            if self.decay_epochs:
                return self.base * self.decay_rate ** math.floor(epoch / self.decay_epochs)
            return self.base * self.decay_rate ** sum(epoch >= m for m in self.steps)
        total = self.epochs * self.iters - self.warmup_iters
        progress = min(1.0, (step - self.warmup_iters) / max(1, total))
        if self.kind == "linear":
            return self.end_lr + (self.base - self.end_lr) * (1.0 - progress)
        if self.kind == "cosine":
            return self.end_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.base - self.end_lr)
        raise ValueError(f"unknown lr schedule {self.kind!r}")

    def apply(self, optimizer, step: int) -> float:
        lr = self(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
