"""The data section of the training configuration: where the images come from and how they are read, sized,
augmented and batched. The data factory (loader.build_data) takes this section alone, so a validation or benchmark
tool asks for loaders without building a whole training configuration."""
from __future__ import annotations

from dataclasses import dataclass


def flag_for(name: str) -> str:
    """The flag of setting `name` where no CLI dialect spells it otherwise: "--" and the name with dashes."""
    return f"--{name.replace('_', '-')}"


@dataclass
class DataConfig:
    data: str | None = None  # the dataset root, holding the train and val splits
    data_backend: str = "pytorch"
    # The per-process batch; a step's global batch (optim.optimizer_batch_size) is made of these.
    batch_size: int = 256
    # Image size, crop and normalisation left at None take the model's; the caller resolves them (it knows the
    # model) and hands the values to build_data.
    image_size: int | None = None
    val_image_size: int | None = None
    crop_pct: float | None = None
    interpolation: str = "bilinear"
    val_interpolation: str | None = None  # None: same as training
    augmentation: str | None = None
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    vflip: float = 0.0
    no_aug: bool = False  # train with the val transform (timm's --no-aug)
    train_split: str = "train"
    val_split: str = "val"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    val_batch_size: int | None = None
    color_jitter: float = 0.0
    # Random erasing: the trainer applies it to each loaded batch on the device.
    random_erasing: float = 0.0
    random_erasing_mode: str = "const"
    random_erasing_count: int = 1
    workers: int = 5
    prefetch: int = 2
    skip_bad_images: bool = False
    synthetic_steps: int = 100
