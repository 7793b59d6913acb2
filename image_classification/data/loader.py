"""The data factory: one call gives the train and val iterables for any backend, all with the same contract."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from common.cli_errors import UserError

from .choices import BACKENDS
from .device import DeviceLoader, collate_uint8
from .folder import ImageFolderDataset
from .samplers import ShardSampler
from .synthetic import SyntheticLoader
from .transforms import train_transform, val_transform
from .workers import ignore_stop_signals


@dataclass
class DataBundle:
    train: object | None
    val: object | None
    num_classes: int
    class_names: list[str] | None


def _folder(root: Path, split: str) -> Path:
    path = root / split
    if not path.is_dir() and split == "validation" and (root / "val").is_dir():
        path = root / "val"  # timm's default split name, on the usual folder layout
    if not path.is_dir():
        raise UserError(f"{path} not found: the data folder must hold train/ and val/ ImageFolders "
                        f"(python -m common.datasets.digits writes one)")
    return path


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


def check_val_classes(train_classes, val_classes) -> list:
    """The classes of a run: validation's folders must name the same classes as training's, when both are loaded."""
    if train_classes is not None and val_classes != train_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        raise UserError(f"train/ and val/ class folders differ (only in train: {only_train[:5]}, "
                        f"only in val: {only_val[:5]})")
    return train_classes or val_classes


def bundle(cfg, root, train, val, classes) -> DataBundle:
    """Every backend's result, after the class count check."""
    if cfg.num_classes is not None and cfg.num_classes != len(classes):
        flag = cfg.flag("num_classes")
        raise UserError(f"{root} has {len(classes)} classes but {flag} is {cfg.num_classes}: "
                        f"pass {flag} {len(classes)} (or leave it out to use the data's count)")
    warn_if_topk_covers_every_class(cfg, root, len(classes))
    return DataBundle(train, val, len(classes), list(classes))


def warn_if_topk_covers_every_class(cfg, root, num_classes: int) -> None:
    """Top-k of k >= the class count is 100% whatever the model does. Warned, not refused: the default k (5) meets
    small data sets that the user never asked a top-k of."""
    if cfg.topk <= num_classes or os.environ.get("RANK", "0") != "0":  # one line per run, not one per process
        return
    print(f"warning: {cfg.flag('topk')} {cfg.topk} is more than the {num_classes} classes in {root}: every image "
          f"will count as a top-{cfg.topk} hit", file=sys.stderr, flush=True)


def build_data(cfg, *, image_size: int, val_image_size: int, crop_pct: float, mean, std, device: torch.device,
               rank: int = 0, world_size: int = 1, need_train: bool = True, need_val: bool = True) -> DataBundle:
    memory_format = torch.channels_last if cfg.memory_format == "nhwc" else torch.contiguous_format
    if cfg.data_backend == "synthetic":
        n = cfg.num_classes or 1000
        steps = cfg.prof if cfg.prof > 0 else cfg.synthetic_steps

        def make(size):
            return SyntheticLoader(cfg.batch_size, size, n, steps, device, memory_format, seed=cfg.seed or 0)

        return DataBundle(make(image_size) if need_train else None, make(val_image_size) if need_val else None, n, None)
    if cfg.data_backend not in BACKENDS:
        raise UserError(f"data backend {cfg.data_backend!r} is not available; choose from {', '.join(BACKENDS)}")
    kwargs = dict(image_size=image_size, val_image_size=val_image_size, crop_pct=crop_pct, mean=mean, std=std,
                  device=device, rank=rank, world_size=world_size, need_train=need_train, need_val=need_val)
    if cfg.data_backend in ("dali-cpu", "dali-gpu"):
        from .dali import build_dali_data  # imports DALI, with one clear line when it is not installed

        return build_dali_data(cfg, gpu=cfg.data_backend == "dali-gpu", **kwargs)
    if cfg.data_backend == "pytorch-gpu":
        from .gpu_decode import build_gpu_decode_data

        return build_gpu_decode_data(cfg, **kwargs)

    root = Path(cfg.data)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist")
    common = dict(seed=cfg.seed, rank=rank, world_size=world_size, workers=cfg.workers, prefetch=cfg.prefetch,
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
        ds = ImageFolderDataset(_folder(root, cfg.train_split), tf, seed=cfg.seed)
        per_rank = -(-len(ds) // world_size)
        if per_rank < cfg.batch_size:
            raise UserError(f"{ds.root} has {len(ds)} images: fewer than one batch of {cfg.batch_size} per process; "
                            f"lower {cfg.flag('batch_size')}")
        classes = ds.classes
        loader = _loader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True, **common)
        train = DeviceLoader(loader, device, mean, std, memory_format=memory_format, skip_bad=cfg.skip_bad_images,
                             dataset=ds, scan_workers=max(cfg.workers, 1))
    if need_val:
        tf = val_transform(val_image_size, crop_pct=crop_pct, interpolation=cfg.val_interpolation or cfg.interpolation)
        ds = ImageFolderDataset(_folder(root, cfg.val_split), tf, seed=None)
        classes = check_val_classes(classes, ds.classes)
        loader = _loader(ds, batch_size=cfg.val_batch_size or cfg.batch_size, shuffle=False, drop_last=False, **common)
        val = DeviceLoader(loader, device, mean, std, memory_format=memory_format, skip_bad=cfg.skip_bad_images,
                           dataset=ds, scan_workers=max(cfg.workers, 1))
    return bundle(cfg, root, train, val, classes)
