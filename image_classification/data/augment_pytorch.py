"""What the pytorch backend runs for each augmentation policy: torchvision's and timm's transforms on PIL images.

Each function takes the policy's name as the user spelled it and returns the transform that follows the crop and flips
(see augmentations.py for which policy uses which).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from common.cli_errors import UserError

if TYPE_CHECKING:
    from torchvision.transforms import InterpolationMode

# torchvision is imported inside the functions: the registry (augmentations.py) imports this module, and the command
# lines build their --augmentation help from the registry without importing torch.


def torchvision_autoaugment(name: str, *, image_size: int, interpolation: InterpolationMode, fill: list[int]):
    import torchvision.transforms.v2 as T

    # torchvision's ImageNet policy: the one upstream hand-wrote (and which crashes there on NumPy >= 1.24).
    return T.AutoAugment(T.AutoAugmentPolicy.IMAGENET, interpolation=interpolation, fill=fill)


def torchvision_randaugment(name: str, *, image_size: int, interpolation: InterpolationMode, fill: list[int]):
    import torchvision.transforms.v2 as T

    return T.RandAugment(interpolation=interpolation, fill=fill)


def timm_rand_augment(name: str, *, image_size: int, interpolation: InterpolationMode, fill: list[int]):
    from timm.data.auto_augment import rand_augment_transform

    return _timm_policy(rand_augment_transform, name, image_size, fill)


def timm_augmix(name: str, *, image_size: int, interpolation: InterpolationMode, fill: list[int]):
    from timm.data.auto_augment import augment_and_mix_transform

    return _timm_policy(augment_and_mix_transform, name, image_size, fill)


def _timm_policy(make, name: str, image_size: int, fill: list[int]):
    hparams = {"translate_const": int(image_size * 0.45), "img_mean": tuple(fill)}
    try:
        return make(name, hparams)
    except (AssertionError, KeyError, ValueError) as exc:
        raise UserError(f"bad augmentation spec {name!r}: {exc}") from None
