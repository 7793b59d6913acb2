"""Training losses: label smoothing, and soft targets when mixup/cutmix is on (timm's Mixup does the mixing)."""
from __future__ import annotations

import torch.nn as nn

from common.cli_errors import UserError


def build_mixup(cfg, num_classes: int):
    if cfg.mixup <= 0 and cfg.cutmix <= 0 and not cfg.cutmix_minmax:
        return None
    if cfg.batch_size % 2:
        raise UserError(f"mixup/cutmix pair images within a batch: {cfg.flag('batch_size')} must be even, got "
                        f"{cfg.batch_size}")
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, cutmix_minmax=cfg.cutmix_minmax,
                 prob=cfg.mixup_prob, switch_prob=cfg.mixup_switch_prob, mode=cfg.mixup_mode,
                 label_smoothing=cfg.label_smoothing, num_classes=num_classes)


def build_train_loss(cfg, mixup) -> nn.Module:
    if mixup is not None:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()  # smoothing is already folded into the mixed targets
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
