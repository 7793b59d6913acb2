"""The one factory: a registered model, built and, when asked, loaded with weights from any checkpoint layout.

It sits above both the registry (names, metadata, builders) and checkpoint.py (files), which reads the registry to
check a checkpoint's architecture: in the registry, loading would make the two import each other.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch.nn as nn

from common.cli_errors import UserError

from .checkpoint import QuantizerRestorer, cached_published_weights, load_pretrained
from .registry import get_model_info


def create_model(
    name: str,
    pretrained: str | Path | bool | None = None,
    num_classes: int = 1000,
    *,
    fresh_classifier: bool = False,
    weights: str = "auto",
    restore_quantizers: QuantizerRestorer | None = None,
    **model_kwargs,
) -> nn.Module:
    """Build a registered model; `pretrained` is a checkpoint path (any supported format) or True for the
    published weights when they are already in the torch hub cache (no download happens here).

    `weights` picks between a checkpoint's EMA and raw weights: "auto" (EMA when present), "ema" or "raw".
    `fresh_classifier` allows a checkpoint with another class count: its classifier is dropped and re-initialised.
    `restore_quantizers` (quantization.state's) lets an INT8-quantized checkpoint load; without it one is refused.
    """
    info = get_model_info(name)
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    try:
        model = info.builder(num_classes=num_classes, **model_kwargs)
    except TypeError as exc:
        # A model flag of another family (efficientnet/classify.py --bn_epsilon with a GPUNet checkpoint).
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown is None:
            raise
        raise UserError(f"{info.name} has no model option {unknown.group(1)!r} (--{unknown.group(1)}): it belongs "
                        f"to other models; drop it") from None
    # A model built from a user's architecture file knows its own resolution better than the registry entry.
    model.pretrained_cfg = info.metadata() | {"num_classes": num_classes} | getattr(model, "metadata_overrides", {})
    if pretrained is True:
        pretrained = cached_published_weights(info)
    if pretrained:
        load_pretrained(model, pretrained, weights=weights, fresh_classifier=fresh_classifier,
                        restore_quantizers=restore_quantizers)
    return model
