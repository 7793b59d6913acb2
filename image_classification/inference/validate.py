"""Validate a registered model on an ImageFolder and report timm's result dict.

The pieces every validation front end needs (GPUNet's timm-style `validate.py`, upstream's `GPUNet_Builder.test_model`):
find the validation folder, load weights from any checkpoint layout with the class count they carry, resolve the
preprocessing (image size, crop, interpolation, mean, std) from the model with the user's overrides, build the val
loader, run the one evaluation loop (`evaluate.evaluate`) and shape its numbers like timm's `validate.py` does.
"""
from __future__ import annotations

import csv
import os
import sys
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.datasets.folder import IMG_EXTENSIONS

from common.cli_errors import UserError
from image_classification.models.checkpoint import QuantizerRestorer, published_weights_path
from image_classification.models.loading import load_checkpoint_model
from image_classification.preprocessing import Preprocessing

from .evaluate import evaluate

VAL_SPLITS = ("val", "validation")


# --- data ---------------------------------------------------------------------------------------------------------


def _has_images(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS) for e in entries)


def resolve_image_folder(path: str | os.PathLike) -> tuple[Path, str]:
    """(root, split) such that `root/split` is the ImageFolder to validate on.

    `path` is either a dataset root holding `val/` (or `validation/`), or the validation ImageFolder itself
    (`<path>/<class>/<image>`), recognised by class folders that hold images.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"data folder {folder} does not exist: pass the validation ImageFolder or its parent")
    for split in VAL_SPLITS:
        if (folder / split).is_dir():
            return folder, split
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    # Checking a few class folders is enough to tell an ImageFolder from a root without a val split.
    if any(_has_images(d) for d in class_dirs[:8]):
        resolved = folder.resolve()
        return resolved.parent, resolved.name
    found = ", ".join(d.name + "/" for d in class_dirs[:4])
    raise UserError(
        f"{folder} holds neither val/ (or validation/) nor class folders with images"
        + (f" (found {found})" if found else "")
        + ": pass the validation ImageFolder (<dir>/<class>/<image>) or the folder that holds it as val/"
    )


def folder_classes(root: Path, split: str) -> list[str]:
    from torchvision.datasets.folder import find_classes

    try:
        return find_classes(str(root / split))[0]
    except FileNotFoundError:
        raise UserError(f"{root / split} has no class folders: expected <dir>/<class>/<image>") from None


def build_val_loader(root: Path, split: str, prep: Preprocessing, *, batch_size: int, workers: int,
                     device: torch.device, channels_last: bool = False):
    """The val loader of the data factory (resize by crop_pct, centre crop, normalise on the device)."""
    from image_classification.data.config import DataConfig
    from image_classification.data.loader import build_data

    if batch_size < 1:
        raise UserError(f"the batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise UserError(f"the number of workers must not be negative, got {workers}")
    data = DataConfig(data=str(root), val_split=split, batch_size=batch_size, workers=workers,
                      interpolation=prep.interpolation, val_interpolation=prep.interpolation)
    data_bundle = build_data(data, image_size=prep.image_size, val_image_size=prep.image_size, crop_pct=prep.crop_pct,
                        mean=prep.mean, std=prep.std, device=device, memory_format="nhwc" if channels_last else "nchw",
                        need_train=False)
    return data_bundle.val, data_bundle.num_classes


# --- models and checkpoints ---------------------------------------------------------------------------------------


def cached_models(pattern: str = "*") -> list[str]:
    """Registered models (canonical names matching `pattern`) whose published weights are in the hub cache."""
    from image_classification.models import get_model_info, list_models

    out = []
    for name in list_models(pattern):
        path = published_weights_path(get_model_info(name))
        if path is not None and path.is_file():
            out.append(name)
    return out


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- evaluation and results ---------------------------------------------------------------------------------------


class ProgressPrinter:
    """A logger for `evaluate`: prints timm's 'Test: [i/N]' line every `log_freq` batches."""

    def __init__(self, total: int, log_freq: int, stream=None):
        self.total = total
        self.log_freq = max(1, log_freq)
        self.stream = stream or sys.stderr
        self.count = 0
        self.latency = 0.0
        self.images = 0.0

    def start_iteration(self):
        pass

    def log_metric(self, name: str, value: float, n: int = 1):
        if name.endswith(".compute_ips"):
            self.images += n

    def log_latency(self, prefix: str, seconds: float, n: int = 1):
        self.latency += seconds

    def end_iteration(self, mode: str = "val"):
        self.count += 1
        if self.count % self.log_freq == 0 or self.count == self.total:
            rate = self.images / self.latency if self.latency else 0.0
            print(f"Test: [{self.count:>4d}/{self.total}]  Time {self.latency / self.count:.3f}s/batch  "
                  f"{rate:.1f} img/s", file=self.stream, flush=True)


def precision_for(device: torch.device, amp: bool) -> str:
    if not amp:
        return "fp32"
    if device.type != "cuda":
        raise UserError("--amp (fp16 autocast) needs a GPU: drop --amp on the CPU")
    return "fp16"


def run_evaluation(model: nn.Module, loader, *, device: torch.device, precision: str = "fp32", topk: int = 5,
                   log_freq: int = 0) -> dict:
    progress = ProgressPrinter(len(loader), log_freq) if log_freq > 0 else None
    result = evaluate(model, loader, device=device, precision=precision, topk=topk, logger=progress)
    if not result.get("images"):
        raise UserError("the validation folder yielded no images")
    return result


def result_dict(name: str, model: nn.Module, metrics: dict, prep: Preprocessing, topk: int = 5) -> OrderedDict:
    """timm validate.py's result (rounded as timm does), GPUNet's average_ips, and this project's extras."""
    top1, topk_acc = metrics["top1"], metrics[f"top{topk}"]
    return OrderedDict([
        ("model", name),
        ("top1", round(top1, 4)),
        ("top1_err", round(100.0 - top1, 4)),
        (f"top{topk}", round(topk_acc, 4)),
        (f"top{topk}_err", round(100.0 - topk_acc, 4)),
        ("param_count", round(param_count(model) / 1e6, 2)),
        ("img_size", prep.image_size),
        ("crop_pct", prep.crop_pct),
        ("cropt_pct", prep.crop_pct),  # upstream's spelling, for parsers written against it
        ("interpolation", prep.interpolation),
        ("average_ips", round(metrics["total_ips"], 2)),
        ("loss", round(metrics["loss"], 6)),
        ("images", metrics["images"]),
        ("compute_latency", metrics["compute_latency"]),
    ])


def validate_folder(
    name: str | None,
    data: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = False,
    use_ema: bool = False,
    num_classes: int | None = None,
    model_kwargs: dict | None = None,
    img_size: int | None = None,
    input_size: tuple[int, int, int] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    mean=None,
    std=None,
    batch_size: int = 256,
    workers: int = 4,
    device: torch.device | None = None,
    amp: bool = False,
    channels_last: bool = False,
    topk: int = 5,
    log_freq: int = 0,
    restore_quantizers: QuantizerRestorer | None = None,
) -> OrderedDict:
    """Everything timm's validate() does for one (model, checkpoint): the result dict. `restore_quantizers`
    (quantization.state's) lets `checkpoint` be INT8-quantized; without it one is refused."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = precision_for(device, amp)
    if topk < 1:
        raise UserError(f"--topk must be at least 1, got {topk}")
    root, split = resolve_image_folder(data)
    classes = folder_classes(root, split)
    loaded = load_checkpoint_model(checkpoint, name, pretrained=pretrained,
                                   weights="ema" if use_ema else ("auto" if pretrained else "raw"),
                                   num_classes=num_classes, data_classes=len(classes), model_kwargs=model_kwargs,
                                   arch_flag="--model", ema_flag="--use-ema", restore_quantizers=restore_quantizers)
    prep = loaded.preprocessing.with_overrides(image_size=img_size, input_size=input_size, crop_pct=crop_pct,
                                               interpolation=interpolation, mean=mean, std=std)
    warning = loaded.unrecorded_preprocessing_warning("--img-size")
    if warning and img_size is None and input_size is None:
        print(warning, file=sys.stderr, flush=True)
    loader, _ = build_val_loader(root, split, prep, batch_size=batch_size, workers=workers, device=device,
                                 channels_last=channels_last)
    model = loaded.model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    metrics = run_evaluation(model, loader, device=device, precision=precision, topk=topk, log_freq=log_freq)
    result = result_dict(loaded.name, model, metrics, prep, topk)
    if loaded.checkpoint is not None:
        result["checkpoint"] = str(loaded.checkpoint)
        result["weights"] = loaded.weights_used
    return result


def write_results_csv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """One CSV with the union of the rows' columns (a failed row has fewer, plus `error`)."""
    from common.atomic_files import atomic_write

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    path = Path(path)
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path
