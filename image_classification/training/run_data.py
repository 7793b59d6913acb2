"""The loaders a training (or calibration) run reads: its data section, with what the rest of its configuration asks
of them: the model's class count, the batch layout, the seed, the length of a --prof pass, and the dialect's flags."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from image_classification.data.bundle import DataBundle
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
        warn_if_topk_covers_every_class(cfg, result.num_classes)
    return result


def warn_if_topk_covers_every_class(cfg: TrainingConfig, num_classes: int) -> None:
    """Top-k of k >= the class count is 100% whatever the model does. Warned, not refused: the default k (5) meets
    small data sets that the user never asked a top-k of."""
    if cfg.topk <= num_classes or os.environ.get("RANK", "0") != "0":  # one line per run, not one per process
        return
    print(f"warning: {cfg.flag('topk')} {cfg.topk} is more than the {num_classes} classes in {Path(cfg.data)}: "
          f"every image will count as a top-{cfg.topk} hit", file=sys.stderr, flush=True)
