"""The loaders a training (or calibration) run reads: its data section, with what the rest of its configuration asks
of them: the model's class count, the batch layout, the seed, the length of a --prof pass, and the dialect's flags."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from image_classification.data.bundle import DataBundle, warn_if_topk_covers_every_class
from image_classification.data.loader import build_data

from .config import TrainingConfig


def build_run_data(cfg: TrainingConfig, **kwargs) -> DataBundle:
    """build_data for the run `cfg`; `kwargs` are build_data's sizes, normalisation, device and process."""
    data = cfg.sections.data
    if cfg.prof > 0:  # a profiled pass stops after --prof batches: synthetic data has that many
        data = dataclasses.replace(data, synthetic_steps=cfg.prof)
    result = build_data(data, memory_format=cfg.memory_format, seed=cfg.seed, num_classes=cfg.num_classes,
                        flag=cfg.flag, **kwargs)
    if result.class_names is not None:  # read from folders, not synthetic
        warn_if_topk_covers_every_class(cfg.topk, result.num_classes, Path(cfg.data), cfg.flag("topk"))
    return result
