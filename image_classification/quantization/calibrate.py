"""Calibration: the batches it sees and the INT8 ranges it computes from them (post-training quantization).

The batches are training images through the validation transform (resize, centre crop), shuffled with a fixed seed:
augmentation (random crops, flips, mixup) would widen the activation ranges beyond what inference sees, and the
shuffle matters because an ImageFolder lists its images class by class. Every process calibrates on the same
batches, so every rank of a multi-GPU run ends with the same ranges.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from common.cli_errors import UserError
from image_classification.data.choices import reads_folder

from .backend import import_modelopt, load_cuda_kernels, quiet
from .recipe import CALIB_METHODS, DEFAULT_PERCENTILE, is_weight_quantizer, quant_config


@dataclass(frozen=True)
class CalibrationResult:
    method: str
    percentile: float | None
    batches: int
    images: int

    def describe(self) -> str:
        how = f"histogram, {self.percentile:g}th percentile" if self.method == "histogram" else "max"
        return f"{how}, on {self.batches} batches ({self.images} images)"


def calibration_loader(cfg, *, image_size: int, crop_pct: float, mean, std, device: torch.device,
                       num_classes: int | None = None) -> tuple[Iterable, list[str] | None]:
    """(batches, class names) for calibrating: the training folder through the validation transform, or the
    synthetic batch with --data-backend synthetic (a backend that reads no folder). The DALI and GPU-decoding
    backends calibrate through this loader too: a few batches do not need a fast pipeline."""
    memory_format = torch.channels_last if cfg.memory_format == "nhwc" else torch.contiguous_format
    if not reads_folder(cfg.data_backend):
        from image_classification.data.synthetic import SyntheticLoader

        steps = max(1, cfg.prof if cfg.prof > 0 else cfg.synthetic_steps)
        return SyntheticLoader(cfg.batch_size, image_size, num_classes or 1000, steps, device, memory_format,
                               seed=cfg.seed or 0), None
    from torch.utils.data import DataLoader

    from image_classification.data.device import DeviceLoader, collate_uint8
    from image_classification.data.folder import ImageFolderDataset
    from image_classification.data.samplers import ShardSampler
    from image_classification.data.transforms import val_transform

    folder = Path(cfg.data) / cfg.train_split
    if not folder.is_dir():
        raise UserError(f"{folder} not found: calibration reads the training images (<data>/{cfg.train_split}/)")
    transform = val_transform(image_size, crop_pct=crop_pct, interpolation=cfg.val_interpolation or cfg.interpolation)
    dataset = ImageFolderDataset(folder, transform, seed=None)
    sampler = ShardSampler(len(dataset), shuffle=True, seed=cfg.seed or 0, rank=0, world_size=1)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                        collate_fn=collate_uint8, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(cfg.seed or 0))
    return DeviceLoader(loader, device, mean, std, memory_format=memory_format, skip_bad=cfg.skip_bad_images,
                        dataset=dataset, scan_workers=max(cfg.workers, 1)), list(dataset.classes)


def _quantizers(model: nn.Module):
    from modelopt.torch.quantization.nn import TensorQuantizer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, TensorQuantizer)]


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable, *, method: str, num_batches: int,
              percentile: float = DEFAULT_PERCENTILE, log: Callable[[str], None] | None = None) -> CalibrationResult:
    """Insert the INT8 quantizers into `model` (in place) and calibrate them on the first `num_batches` batches.

    Upstream's two steps, on modelopt's quantizers: collect statistics with quantization off, then load each
    quantizer's range from its calibrator (weights: max; activations: max, or the histogram's percentile).
    """
    if method not in CALIB_METHODS:
        raise UserError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, got {method!r}")
    if num_batches < 1:
        raise UserError(f"the number of calibration batches must be at least 1, got {num_batches}")
    if method == "histogram" and not 0.0 < percentile <= 100.0:
        raise UserError(f"--percentile must be in (0, 100], got {percentile}")
    mtq, _ = import_modelopt()
    if any(p.is_cuda for p in model.parameters()):
        load_cuda_kernels()
    with quiet():
        mtq.quantize(model, quant_config(method))
    was_training = model.training
    model.eval()
    quantizers = [(name, q) for name, q in _quantizers(model) if q.is_enabled]
    for _, q in quantizers:
        q.disable_quant()
        q.enable_calib()
    seen = images = 0
    for images_batch, _ in batches:
        if seen >= num_batches:
            break
        model(images_batch)
        seen += 1
        images += int(images_batch.shape[0])
    if seen == 0:
        raise UserError("the calibration data yielded no batch")
    if seen < num_batches and log is not None:
        log(f"warning: the calibration data has only {seen} batches of the {num_batches} asked for")
    for name, q in quantizers:
        if method == "histogram" and not is_weight_quantizer(name):
            q.load_calib_amax("percentile", percentile=percentile)
        else:
            q.load_calib_amax()
        q.enable_quant()
        q.disable_calib()
    model.train(was_training)
    return CalibrationResult(method, percentile if method == "histogram" else None, seen, images)
