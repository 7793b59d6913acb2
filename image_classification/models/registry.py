"""Every architecture registered by name, with per-model metadata (timm's habit); factory.create_model builds them."""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn

from common.cli_errors import UserError

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
