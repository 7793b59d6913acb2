"""A learning-rate schedule is one entry in SCHEDULES (image_classification/training/schedule.py): the parser's
choices, the config's validation and LRSchedule all read that registry, so nothing else needs to learn the name."""
from __future__ import annotations

import pytest

from common.cli_errors import UserError
from efficientnet.main import build_parser, config_from_args
from image_classification.training.config import TrainingConfig
from image_classification.training.schedule import SCHEDULES, LRSchedule, Schedule


def _half(schedule: LRSchedule, progress: float) -> float:
    return schedule.base / 2


def test_one_registry_entry_adds_a_schedule(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="must be one of step, linear, cosine, got 'half'"):
        TrainingConfig(lr_schedule="half").validate()

    monkeypatch.setitem(SCHEDULES, "half", Schedule(_half, ends=False))
    args = build_parser().parse_args([str(tmp_path), "--lr-schedule", "half", "--lr", "0.4", "--warmup", "1"])
    cfg = config_from_args(args).validate()
    assert cfg.lr_schedule == "half"
    schedule = LRSchedule(cfg)
    assert schedule(0.5) == cfg.warmup_lr + (0.4 - cfg.warmup_lr) * 0.5  # warmup stays the schedule's own
    assert schedule(1.0) == schedule(37.5) == 0.2
    with pytest.raises(UserError, match="must be one of step, linear, cosine, half, got 'quarter'"):
        TrainingConfig(lr_schedule="quarter").validate()


def test_an_unregistered_schedule_still_fails_at_the_first_decayed_step():
    schedule = LRSchedule(TrainingConfig(lr_schedule="quarter", warmup=1))
    assert schedule(0.5) > 0  # warmup needs no schedule
    with pytest.raises(ValueError, match="unknown lr schedule 'quarter'"):
        schedule(1.0)
