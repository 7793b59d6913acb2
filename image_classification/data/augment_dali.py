"""What the DALI backends (dali-cpu, dali-gpu) run for each augmentation policy: DALI's `auto_aug` operators.

Each parser takes the policy's name as the user spelled it and returns the pipeline step, a frozen spec that
`apply`s itself to the images inside the pipeline (see augmentations.py for which policy uses which). DALI is
imported only inside `apply`, when a pipeline is built.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from common.cli_errors import UserError

RAND_SPEC_KEYS = ("m", "n", "mstd", "mmax", "inc", "p", "w")


class PipelineStep(Protocol):
    """A policy's step in the pipeline, after the crop, resize and vertical flip (the horizontal flip comes later,
    in crop_mirror_normalize); `shape` is the (height, width) of the images."""

    def apply(self, images, *, shape: tuple[int, int], fill_value: int): ...


@dataclass(frozen=True)
class RandAugmentSpec:
    """DALI rand_augment arguments: `m` of `num_magnitude_bins - 1` is the fraction of each op's full strength."""

    n: int
    m: int
    num_magnitude_bins: int
    monotonic_mag: bool
    max_translate_rel: float

    def apply(self, images, *, shape: tuple[int, int], fill_value: int):
        from nvidia.dali.auto_aug import rand_augment

        return rand_augment.rand_augment(
            images, n=self.n, m=self.m, num_magnitude_bins=self.num_magnitude_bins, shape=shape,
            fill_value=fill_value, max_translate_rel=self.max_translate_rel, monotonic_mag=self.monotonic_mag)


@dataclass(frozen=True)
class AutoAugmentSpec:
    max_translate_rel: float = 150 / 331  # torchvision's ImageNet policy (the pytorch backend's)

    def apply(self, images, *, shape: tuple[int, int], fill_value: int):
        from nvidia.dali.auto_aug import auto_augment

        return auto_augment.auto_augment_image_net(images, shape=shape, fill_value=fill_value,
                                                   max_translate_rel=self.max_translate_rel)


def dali_autoaugment(name: str) -> AutoAugmentSpec:
    """DALI's AutoAugment ImageNet policy (the pytorch backend runs torchvision's)."""
    return AutoAugmentSpec()


def torchvision_randaugment(name: str) -> RandAugmentSpec:
    """torchvision's RandAugment defaults: n=2 and m=9 of 31 magnitude bins."""
    return RandAugmentSpec(n=2, m=9, num_magnitude_bins=31, monotonic_mag=True, max_translate_rel=150 / 331)


def timm_rand_augment(name: str) -> RandAugmentSpec:
    """A timm spec ("rand-m9-mstd0.5"): `n` (ops per image, default 2) and `m` (magnitude out of 10, timm's scale;
    default 10 as in timm) are honoured, `inc1` picks DALI's monotonic suite (timm's increasing ops). DALI has no
    magnitude noise or per-op probability, so `mstd`, `mmax`, `p` and `w` are accepted but have no effect: DALI
    always applies the n chosen ops at magnitude m, and its op suite is its own, not timm's."""
    n, magnitude, increasing = 2, 10.0, False
    for part in name.split("-")[1:]:
        key, *value = re.split(r"(\d.*)", part)
        if key not in RAND_SPEC_KEYS or not value:
            raise UserError(f"bad augmentation spec {name!r}: unknown section {part!r} (DALI reads "
                            f"{', '.join(k + '<number>' for k in RAND_SPEC_KEYS)})")
        try:
            number = float(value[0])
        except ValueError:
            raise UserError(f"bad augmentation spec {name!r}: {part!r} needs a number") from None
        if key == "n":
            if number != int(number) or number < 0:
                raise UserError(f"bad augmentation spec {name!r}: n (ops per image) must be a whole number")
            n = int(number)
        elif key == "m":
            magnitude = number
        elif key == "inc":
            increasing = bool(number)
    # timm clips the magnitude to [0, 10]; 101 bins keep one decimal of it.
    m = int(round(min(max(magnitude, 0.0), 10.0) * 10))
    return RandAugmentSpec(n=n, m=m, num_magnitude_bins=101, monotonic_mag=increasing, max_translate_rel=0.45)
