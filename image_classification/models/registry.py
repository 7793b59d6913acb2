"""Every architecture registered by name, one factory, per-model metadata (timm's habit)."""
from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch.nn as nn

from common.cli_errors import UserError

if TYPE_CHECKING:
    from .checkpoint import QuantizerRestorer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    builder: Callable[..., nn.Module] = field(repr=False)
    input_size: int
    crop_pct: float
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    aliases: tuple[str, ...] = ()
    # Upstream's published weights; we never download at run time, but we name the file so a user can fetch it.
    weights_url: str | None = None
    # The checkpoint's file name in the torch hub cache, when it is not the URL's last part (GPUNet ships zips).
    weights_file: str | None = None
    # Upstream's INT8 variants (efficientnet-quant-*): the network TensorRT wants quantized, and quant_main's default.
    quantized: bool = False
    # The architecture whose weights this one takes unchanged: a quant variant starts from its FP32 model's weights.
    weights_of: str | None = None

    def metadata(self) -> dict:
        return {
            "architecture": self.name,
            "input_size": (3, self.input_size, self.input_size),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": self.mean,
            "std": self.std,
        }


_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    # Upstream spells names both ways (efficientnet-b0 in ConvNets, gpunet_0 in timm); treat them as one. The
    # `nvidia_` prefix of upstream's torch.hub names and of our timm registrations (nvidia_gpunet_0) names the same
    # model, so checkpoints that timm's scripts save under that name load everywhere.
    return name.strip().lower().replace("_", "-").removeprefix("nvidia-")


def register_model(info: ModelInfo) -> ModelInfo:
    for spelling in (info.name, *info.aliases):
        key = _key(spelling)
        if key in _ALIASES and _ALIASES[key] != info.name:
            raise ValueError(f"model name {spelling!r} registered twice")
        _ALIASES[key] = info.name
    _REGISTRY[info.name] = info
    return info


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_model_info(name: str) -> ModelInfo:
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        close = difflib.get_close_matches(_key(name), list(_ALIASES), n=3)
        hint = f" (did you mean {', '.join(sorted({_ALIASES[c] for c in close}))}?)" if close else ""
        raise UserError(f"unknown model {name!r}{hint}; list them with: python -m image_classification.models")
    return _REGISTRY[canonical]


def share_weights(a: str, b: str) -> bool:
    """Whether weights trained as `a` load into `b` as they are (the same model, or an FP32 model and its quant
    variant)."""
    first, second = get_model_info(a), get_model_info(b)
    return (first.weights_of or first.name) == (second.weights_of or second.name)


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
    from .checkpoint import cached_published_weights, load_pretrained

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
