"""PIL-side transforms: they stop at uint8 tensors; normalisation happens on the device (see device.py)."""
from __future__ import annotations

import math

import torchvision.transforms.v2 as T
from torchvision.transforms import InterpolationMode

from common.cli_errors import UserError
from image_classification.preprocessing import val_resize_size  # noqa: F401  (the data loaders' import)

from . import augmentations, choices

# torchvision's modes are named as the command lines spell them (choices.py, which parsers import without torch).
INTERPOLATIONS = {name: InterpolationMode(name) for name in choices.INTERPOLATIONS}


def interpolation_mode(name: str) -> InterpolationMode:
    try:
        return INTERPOLATIONS[name]
    except KeyError:
        raise UserError(
            f"interpolation {name!r} is not available on the pytorch backend; choose {', '.join(INTERPOLATIONS)}"
            + (" (triangular is DALI's: --data-backend dali-cpu or dali-gpu)" if name == "triangular" else "")
        ) from None


def train_transform(
    image_size: int,
    *,
    interpolation: str = "bilinear",
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    vflip: float = 0.0,
    augmentation: str | None = None,
    color_jitter: float = 0.0,
    mean=(0.485, 0.456, 0.406),
) -> T.Compose:
    lo, hi = crop_scale
    if not 0.0 < lo <= hi <= 1.0:
        raise UserError(f"--crop-scale needs 0 < MIN <= MAX <= 1, got {lo} {hi}")
    if not 0.0 <= hflip <= 1.0:
        raise UserError(f"--hflip is a probability in [0, 1], got {hflip}")
    if not 0.0 < crop_ratio[0] <= crop_ratio[1]:
        raise UserError(f"crop aspect ratio range must be positive and ordered, got {crop_ratio}")
    if interpolation == "random":
        # timm's habit (train-interpolation random): each crop picks bilinear or bicubic.
        from timm.data.transforms import RandomResizedCropAndInterpolation

        mode = InterpolationMode.BICUBIC
        steps = [RandomResizedCropAndInterpolation(image_size, scale=(lo, hi), ratio=crop_ratio,
                                                   interpolation="random")]
    else:
        mode = interpolation_mode(interpolation)
        steps = [T.RandomResizedCrop(image_size, scale=(lo, hi), ratio=crop_ratio, interpolation=mode,
                                     antialias=True)]
    if hflip > 0:
        steps.append(T.RandomHorizontalFlip(hflip))
    if vflip > 0:
        steps.append(T.RandomVerticalFlip(vflip))
    policy = augmentations.lookup(augmentation, augmentations.PYTORCH)
    if color_jitter > 0 and not policy.alters_colour:
        steps.append(T.ColorJitter(color_jitter, color_jitter, color_jitter))
    fill = [int(round(255 * m)) for m in mean]
    step = policy.step(augmentations.PYTORCH, augmentation, image_size=image_size, interpolation=mode, fill=fill)
    if step is not None:
        steps.append(step)
    steps.append(T.PILToTensor())
    return T.Compose(steps)


def val_transform(image_size: int, *, crop_pct: float, interpolation: str = "bilinear") -> T.Compose:
    mode = interpolation_mode(interpolation)
    return T.Compose(
        [
            T.Resize(val_resize_size(image_size, crop_pct), interpolation=mode, antialias=True),
            T.CenterCrop(image_size),
            T.PILToTensor(),
        ]
    )


def default_crop_pct(image_size: int) -> float:
    """Upstream ConvNets' val crop (Resize(size + 32), CenterCrop(size)) expressed as a crop fraction."""
    return image_size / (image_size + 32) if image_size > 0 else math.nan
