"""The data factory: one call gives the train and val iterables for any backend, all with the same contract."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from common.cli_errors import UserError

from .bundle import DataBundle, check_val_classes, checked_bundle, split_folder
from .choices import BACKENDS
from .config import DataConfig, flag_for
from .device import DeviceLoader, collate_uint8
from .folder import ImageFolderDataset
from .samplers import ShardSampler
from .transforms import train_transform, val_transform
from .workers import ignore_stop_signals


def _loader(dataset, *, batch_size, shuffle, seed, rank, world_size, workers, prefetch, device, drop_last):
    sampler = ShardSampler(len(dataset), shuffle=shuffle, seed=seed or 0, rank=rank, world_size=world_size)
    kwargs = dict(persistent_workers=True, prefetch_factor=prefetch) if workers > 0 else {}
    # The loader's own generator: starting workers must not draw from the global RNG, or a resumed run (which
    # starts them at another point) would diverge from an uninterrupted one.
    generator = torch.Generator().manual_seed(seed or 0)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_uint8,
        pin_memory=device.type == "cuda", drop_last=drop_last, generator=generator,
        worker_init_fn=ignore_stop_signals, **kwargs,
    )


def build_data(cfg: DataConfig, *, image_size: int, val_image_size: int, crop_pct: float, mean, std,
               device: torch.device, memory_format: str = "nchw", seed: int | None = None,
               num_classes: int | None = None, flag: Callable[[str], str] = flag_for, rank: int = 0,
               world_size: int = 1, need_train: bool = True, need_val: bool = True) -> DataBundle:
    """The train and val loaders of the data section `cfg`. The caller resolves what the model decides (sizes,
    crop, mean and std), and says how batches are laid out (memory_format nchw | nhwc), the seed, the class count
    the model expects (None: the data's), and how its CLI spells each setting's flag, for the messages.
    The backend's builder is the one BACKENDS (choices.py) names for cfg.data_backend."""
    builder = BACKENDS.get(cfg.data_backend)
    if builder is None:
        raise UserError(f"data backend {cfg.data_backend!r} is not available; choose from {', '.join(BACKENDS)}")
    build = getattr(importlib.import_module(builder.module, __package__), builder.function)
    return build(cfg, **builder.kwargs, image_size=image_size, val_image_size=val_image_size, crop_pct=crop_pct,
                 mean=mean, std=std, device=device, memory_format=memory_format, seed=seed, num_classes=num_classes,
                 flag=flag, rank=rank, world_size=world_size, need_train=need_train, need_val=need_val)


def build_pytorch_data(cfg: DataConfig, *, image_size: int, val_image_size: int, crop_pct: float, mean, std,
                       device: torch.device, memory_format: str, seed: int | None, num_classes: int | None, flag,
                       rank: int = 0, world_size: int = 1, need_train: bool = True,
                       need_val: bool = True) -> DataBundle:
    """`--data-backend pytorch`: an image folder read by DataLoader workers, decoded and augmented on the CPU."""
    layout = torch.channels_last if memory_format == "nhwc" else torch.contiguous_format
    root = Path(cfg.data)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist")
    loader_args = dict(seed=seed, rank=rank, world_size=world_size, workers=cfg.workers, prefetch=cfg.prefetch,
                       device=device)
    train = val = None
    classes = None
    if need_train:
        if cfg.no_aug:
            tf = val_transform(image_size, crop_pct=crop_pct, interpolation=cfg.val_interpolation or "bilinear")
        else:
            tf = train_transform(image_size, interpolation=cfg.interpolation, crop_scale=tuple(cfg.crop_scale),
                                 crop_ratio=tuple(cfg.crop_ratio), hflip=cfg.hflip, vflip=cfg.vflip,
                                 augmentation=cfg.augmentation, color_jitter=cfg.color_jitter, mean=mean)
        ds = ImageFolderDataset(split_folder(root, cfg.train_split), tf, seed=seed)
        per_rank = -(-len(ds) // world_size)
        if per_rank < cfg.batch_size:
            raise UserError(f"{ds.root} has {len(ds)} images: fewer than one batch of {cfg.batch_size} per process; "
                            f"lower {flag('batch_size')}")
        classes = ds.classes
        loader = _loader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True, **loader_args)
        train = DeviceLoader(loader, device, mean, std, memory_format=layout, skip_bad=cfg.skip_bad_images,
                             dataset=ds, scan_workers=max(cfg.workers, 1))
    if need_val:
        tf = val_transform(val_image_size, crop_pct=crop_pct, interpolation=cfg.val_interpolation or cfg.interpolation)
        ds = ImageFolderDataset(split_folder(root, cfg.val_split), tf, seed=None)
        classes = check_val_classes(classes, ds.classes)
        loader = _loader(ds, batch_size=cfg.val_batch_size or cfg.batch_size, shuffle=False, drop_last=False,
                         **loader_args)
        val = DeviceLoader(loader, device, mean, std, memory_format=layout, skip_bad=cfg.skip_bad_images,
                           dataset=ds, scan_workers=max(cfg.workers, 1))
    return checked_bundle(root, train, val, classes, num_classes=num_classes, flag=flag)
