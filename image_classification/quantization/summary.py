"""The quantizer summary: a few lines on the console, every quantizer in a file.

modelopt's own print_quant_summary lists every quantizer (several hundred lines for an EfficientNet); the console
gets the counts by role instead, and the full list goes to the workspace.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import torch.nn as nn

from .recipe import is_weight_quantizer

ROLES = (
    ("weights", "weights (per output channel)"),
    ("conv", "convolution inputs"),
    ("linear", "linear inputs"),
    ("pool", "pooling inputs"),
    ("se", "SE multiply inputs"),
    ("residual", "residual-add inputs"),
    ("other", "other"),
)


def _role(name: str, parent: nn.Module | None) -> str:
    if is_weight_quantizer(name):
        return "weights"
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("mul_a_quantizer", "mul_b_quantizer"):
        return "se"
    if leaf == "residual_quantizer":
        return "residual"
    if isinstance(parent, nn.Conv2d):
        return "conv"
    if isinstance(parent, nn.Linear):
        return "linear"
    if isinstance(parent, (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d)):
        return "pool"
    return "other"


def quantizer_counts(model: nn.Module) -> dict:
    """{"enabled": n, "disabled": n, role: n enabled, ...} over the model's TensorQuantizers."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    modules = dict(model.named_modules())
    counts: Counter = Counter()
    for name, module in modules.items():
        if not isinstance(module, TensorQuantizer):
            continue
        if not module.is_enabled:
            counts["disabled"] += 1
            continue
        counts["enabled"] += 1
        counts[_role(name, modules.get(name.rsplit(".", 1)[0]) if "." in name else model)] += 1
    return {"enabled": counts["enabled"], "disabled": counts["disabled"],
            **{role: counts[role] for role, _ in ROLES if counts[role]}}


def describe_record(details: dict) -> str:
    """How a checkpoint's ranges came about, from its quantization record (calibration, QAT epochs so far)."""
    method = details.get("calib_method", "unknown method")
    how = f"histogram, {details.get('percentile'):g}th percentile" if method == "histogram" else str(method)
    if details.get("calib_batches"):
        how += f", on {details['calib_batches']} batches ({details.get('calib_images')} images)"
    if details.get("qat_epochs"):
        how += f"; {details['qat_epochs']} QAT epoch(s) since"
    return how


def format_summary(model: nn.Module, how: str | None = None, listing: str | os.PathLike | None = None) -> str:
    counts = quantizer_counts(model)
    lines = [f"=> INT8 quantizers: {counts['enabled']} enabled, {counts['disabled']} off (BatchNorm inputs and "
             f"every output, which TensorRT fuses)"]
    lines.append("   " + ", ".join(f"{counts[role]} {label}" for role, label in ROLES if counts.get(role)))
    if how:
        lines.append(f"   calibrated: {how}")
    if listing:
        lines.append(f"   every quantizer: {listing}")
    return "\n".join(lines)


def write_quantizer_list(model: nn.Module, path: str | os.PathLike) -> Path:
    """One line per quantizer, `name  settings`, as modelopt's print_quant_summary shows them."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    from common.atomic_files import atomic_write

    rows = [f"{name:72} {module}" for name, module in model.named_modules() if isinstance(module, TensorQuantizer)]
    path = Path(path)
    with atomic_write(path, "w") as f:
        f.write("\n".join(rows + [f"{len(rows)} TensorQuantizers"]) + "\n")
    return path
