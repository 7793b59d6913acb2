"""Learning rate as a pure function of training progress, measured in epochs and counted in samples.

Progress is `epoch + samples / epoch_samples`: the samples every rank together consumed in the epoch before the
step, over the epoch's length in samples. Warmup and decay move every step (upstream changed the rate once per
epoch), and a run resumed at another batch size, accumulation or number of ranks continues exactly where the rate
was at that sample count (a step count, which changes meaning with the batch, once sent such runs to rate 0).

A schedule is one entry in SCHEDULES: the CLIs' choices and the config's validation read their names from there.
No torch here: the config and the parsers import this module, and building a parser (or --help) must not load it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple


class Schedule(NamedTuple):
    # (schedule, progress) -> rate, asked only once warmup is over.
    decay: Callable[[LRSchedule, float], float]
    # True when the rate reaches end_lr at the schedule's last epoch: timm's --cooldown-epochs then extend the run
    # past it at that rate, and a schedule that never ends has nothing to cool down from.
    ends: bool


def _step(s: LRSchedule, progress: float) -> float:
    if s.decay_epochs:
        return s.base * s.decay_rate ** math.floor(progress / s.decay_epochs)
    return s.base * s.decay_rate ** sum(progress >= m for m in s.steps)


def _linear(s: LRSchedule, progress: float) -> float:
    return s.end_lr + (s.base - s.end_lr) * (1.0 - s.done(progress))


def _cosine(s: LRSchedule, progress: float) -> float:
    return s.end_lr + 0.5 * (1.0 + math.cos(math.pi * s.done(progress))) * (s.base - s.end_lr)


# The order is the order --help and the validation message list them in.
SCHEDULES: dict[str, Schedule] = {
    "step": Schedule(_step, ends=False),
    "linear": Schedule(_linear, ends=True),
    "cosine": Schedule(_cosine, ends=True),
}
# A live view, not a copy: a schedule registered later is offered and accepted without a second list to update.
LR_SCHEDULES = SCHEDULES.keys()


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

    def done(self, progress: float) -> float:
        """The share of the decay behind `progress` (0 at the end of warmup, 1 from the schedule's end on)."""
        return min(1.0, (progress - self.warmup) / max(self.epochs - self.warmup, 1e-12))

    def __call__(self, progress: float) -> float:
        """The rate at `progress` epochs into the run."""
        if progress < self.warmup:
            return self.warmup_lr + (self.base - self.warmup_lr) * progress / self.warmup
        schedule = SCHEDULES.get(self.kind)
        if schedule is None:
            raise ValueError(f"unknown lr schedule {self.kind!r}")
        return schedule.decay(self, progress)

    def apply(self, optimizer, progress: float) -> float:
        lr = self(progress)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
