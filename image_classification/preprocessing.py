"""What an image must go through before a model sees it: the one description every tool shares.

A checkpoint records it under `model_cfg` (timm's `pretrained_cfg` keys: `input_size`, `crop_pct`, `interpolation`,
`mean`, `std`), a weights file in its metadata, a Hugging Face folder in `config.json`'s `pretrained_cfg`. Training
writes what validation really used, so classify.py, validate.py, the exporters and Triton preprocess as the reported
accuracy did. Plain data with no torch: the data loaders, the serving client and the exporters all read it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from common.cli_errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATION_NAMES = ("bilinear", "bicubic", "nearest")
MIN_IMAGE_SIZE = 8


def val_resize_size(image_size: int, crop_pct: float) -> int:
    """The shorter side an image is resized to before the centre crop of `image_size`."""
    if not 0.0 < crop_pct <= 1.0:
        raise UserError(f"crop_pct must be in (0, 1], got {crop_pct}")
    # round, not floor: 380 / (380/412) lands a hair under 412 in floating point.
    return int(round(image_size / crop_pct))


def _channels(name: str, values) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be numbers (one per RGB channel), got {values!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise UserError(f"{name} takes 1 or 3 values (one per RGB channel), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"{name} must be finite, got {values}")
    return values


def _size_of(input_size) -> int:
    """The side of a square input from `input_size` (C, H, W), (H, W) or one int."""
    if isinstance(input_size, (list, tuple)):
        if len(input_size) == 3 and int(input_size[0]) != 3:
            raise UserError(f"the input size needs 3 channels (RGB images), got {input_size[0]}")
        height, width = int(input_size[-2 if len(input_size) >= 2 else -1]), int(input_size[-1])
        if height != width:
            raise UserError(f"the input size {height}x{width} is not square; only square crops are supported")
        return width
    return int(input_size)


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to `resize_size`, centre-crop `image_size`, scale to [0, 1], normalise."""

    image_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if self.image_size < MIN_IMAGE_SIZE:
            raise UserError(f"the image size must be at least {MIN_IMAGE_SIZE} pixels, got {self.image_size}")
        val_resize_size(self.image_size, self.crop_pct)  # checks 0 < crop_pct <= 1 with the project's message
        if self.interpolation not in INTERPOLATION_NAMES:
            raise UserError(f"interpolation {self.interpolation!r} is not available; choose "
                            f"{', '.join(INTERPOLATION_NAMES)}")
        object.__setattr__(self, "mean", _channels("mean", self.mean))
        object.__setattr__(self, "std", _channels("std", self.std))
        if any(s <= 0 for s in self.std):
            raise UserError(f"std must be positive, got {self.std}")

    @property
    def resize_size(self) -> int:
        return val_resize_size(self.image_size, self.crop_pct)

    @classmethod
    def from_cfg(cls, cfg: dict) -> Preprocessing:
        """From a `model_cfg` / timm `pretrained_cfg` dict (or this class's own `as_dict`)."""
        size = cfg.get("input_size", cfg.get("image_size"))
        if size is None:
            raise UserError("the preprocessing record has no input_size")
        return cls(image_size=_size_of(size), crop_pct=float(cfg.get("crop_pct", 1.0)),
                   interpolation=str(cfg.get("interpolation", "bilinear")), mean=cfg.get("mean", IMAGENET_MEAN),
                   std=cfg.get("std", IMAGENET_STD))

    def with_overrides(self, *, image_size=None, input_size=None, crop_pct=None, interpolation=None, mean=None,
                       std=None) -> Preprocessing:
        """The user's flags over the recorded values (timm's order: input_size wins over image_size)."""
        size = _size_of(input_size) if input_size is not None else image_size
        changes = {"image_size": size, "crop_pct": crop_pct, "interpolation": interpolation, "mean": mean,
                   "std": std}
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_cfg(self) -> dict:
        """The record a checkpoint, weights file or Hugging Face config carries (timm's pretrained_cfg keys)."""
        return {"input_size": [3, self.image_size, self.image_size], "crop_pct": self.crop_pct,
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std)}

    def as_dict(self) -> dict:
        """`as_cfg` plus the derived sizes, for reports and the serving parameter."""
        return {"input_size": (3, self.image_size, self.image_size), "image_size": self.image_size,
                "resize_size": self.resize_size, "crop_pct": self.crop_pct, "interpolation": self.interpolation,
                "mean": self.mean, "std": self.std}
