"""Training losses: label smoothing, and soft targets when a batch augmentation mixes them (mixup/cutmix)."""
from __future__ import annotations

import torch.nn as nn


def build_train_loss(cfg, soft_targets: bool) -> nn.Module:
    if soft_targets:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()  # smoothing is already folded into the mixed targets
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
