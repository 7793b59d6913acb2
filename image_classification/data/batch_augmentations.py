"""The augmentations of whole batches (random erasing, mixup/cutmix): the trainer runs them on the training device
after any data backend, so every backend does the same for them. A new one is one entry in BATCH_AUGMENTATIONS;
the trainer applies whatever `build_batch_augmentations` returns, in this order."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from common.cli_errors import UserError


class RandomErasing:
    """timm's random erasing of rectangles in the (normalised) images; the targets pass through."""

    soft_targets = False

    def __init__(self, cfg, num_classes: int, device: torch.device):
        from timm.data.random_erasing import RandomErasing as TimmRandomErasing

        self.erase = TimmRandomErasing(cfg.random_erasing, mode=cfg.random_erasing_mode,
                                       max_count=cfg.random_erasing_count, device=str(device))

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, epoch: int):
        return self.erase(images), targets


class Mixup:
    """timm's mixup/cutmix: pairs of images blended or pasted, their targets mixed into soft, smoothed ones."""

    soft_targets = True  # the training loss must take class distributions (label smoothing is folded in)

    def __init__(self, cfg, num_classes: int, device: torch.device):
        if cfg.batch_size % 2:
            raise UserError(f"mixup/cutmix pair images within a batch: {cfg.flag('batch_size')} must be even, got "
                            f"{cfg.batch_size}")
        from timm.data import Mixup as TimmMixup

        self.off_epoch = cfg.mixup_off_epoch
        self.mix = TimmMixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, cutmix_minmax=cfg.cutmix_minmax,
                             prob=cfg.mixup_prob, switch_prob=cfg.mixup_switch_prob, mode=cfg.mixup_mode,
                             label_smoothing=cfg.label_smoothing, num_classes=num_classes)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, epoch: int):
        # timm's --mixup-off-epoch: the targets stay soft (smoothed) but images are no longer mixed.
        self.mix.mixup_enabled = not (self.off_epoch and epoch >= self.off_epoch)
        return self.mix(images, targets)


@dataclass(frozen=True)
class BatchAugmentation:
    name: str
    wanted: Callable[[object], bool]  # whether the training config asks for it
    build: Callable  # (cfg, num_classes, device) -> `op(images, targets, epoch) -> (images, targets)`


BATCH_AUGMENTATIONS = (
    BatchAugmentation("random erasing", lambda cfg: cfg.random_erasing > 0, RandomErasing),
    BatchAugmentation("mixup/cutmix", lambda cfg: cfg.mixup > 0 or cfg.cutmix > 0 or bool(cfg.cutmix_minmax), Mixup),
)


def build_batch_augmentations(cfg, num_classes: int, device: torch.device) -> list:
    """The batch augmentations `cfg` asks for, built, in the order they run."""
    return [a.build(cfg, num_classes, device) for a in BATCH_AUGMENTATIONS if a.wanted(cfg)]
