"""What the torch.hub entry points in hubconf.py do: upstream's names and spellings, weights from the cache.

`pretrained=True` never downloads: the published NGC file must already be in the torch hub cache (where
`torch.hub.load_state_dict_from_url` would have put it), and is read through the same loader as every CLI's
`--pretrained`; when it is missing, the error names the URL to fetch and the path to save it as.
"""
from __future__ import annotations

import re

import torch.nn as nn

from common.cli_errors import UserError

from .factory import create_model
from .gpunet_archs import ARCHS
from .registry import get_model_info, list_models

MODEL_MATHS = ("fp32", "fp16")


def hub_model(name: str, pretrained: bool = True, pretrained_from_file=None, **kwargs) -> nn.Module:
    """`name` with the published weights (pretrained), a checkpoint file of any layout the loader reads
    (pretrained_from_file, which then replaces the published weights), or fresh weights. kwargs go to
    create_model (num_classes, fresh_classifier, weights="ema"/"raw", the family's own options)."""
    weights = pretrained_from_file or (True if pretrained else None)
    return create_model(name, pretrained=weights, **kwargs)


def efficientnet_names() -> list[str]:
    # The INT8 variants are left out: upstream's hub loaded them with QAT checkpoints and quantizers; ours come from
    # quant_main.py, not from a hub call.
    return [n for n in list_models("efficientnet-*") if not get_model_info(n).quantized]


def efficientnet_by_type(model_type: str) -> str:
    """Upstream's `type` spellings -> our name: efficientnet-b0, efficientnet_widese_b4, and 'efficient-b0', the
    misspelled default of upstream's nvidia_efficientnet (which made it raise KeyError)."""
    valid = efficientnet_names()
    name = None
    if isinstance(model_type, str):
        spelled = re.sub(r"^efficient-", "efficientnet-", model_type.strip().lower().replace("_", "-"))
        try:
            name = get_model_info(spelled).name
        except UserError:
            pass
    if name not in valid:
        raise UserError(f"unknown EfficientNet type {model_type!r}: choose one of {', '.join(valid)} "
                        f"(efficientnet_b0 and upstream's 'efficient-b0' spellings work too)")
    return name


def gpunet_by_type(model_type: str) -> str:
    """Upstream's model_type (GPUNet-0 ... GPUNet-D2) or latency key (0.65ms ... 2.25ms-D) -> our name."""
    name = None
    if isinstance(model_type, str):
        try:
            name = get_model_info(model_type).name
        except UserError:
            pass
    if name not in ARCHS:
        marketing = ", ".join(arch.marketing_name for arch in ARCHS.values())
        latency = ", ".join(arch.latency_key for arch in ARCHS.values())
        raise UserError(f"unknown GPUNet model_type {model_type!r}: choose one of {marketing} "
                        f"(or a latency key: {latency})")
    return name


def apply_model_math(model: nn.Module, model_math: str) -> nn.Module:
    """upstream's model_math: "fp16" casts the weights to half precision (inputs must then be half too)."""
    math = model_math.lower() if isinstance(model_math, str) else model_math
    if math not in MODEL_MATHS:
        raise UserError(f"model_math must be one of {', '.join(MODEL_MATHS)}, got {model_math!r}")
    return model.half() if math == "fp16" else model
