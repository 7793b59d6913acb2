"""timm's EfficientNet weights (`efficientnet_b0` ... `_b7`) in our EfficientNet's key names.

The two networks are the same graph with the same parameter count (B0: 5,288,548), so the conversion is a rename
plus one reshape:

- timm `conv_stem`/`bn1` -> `stem.conv`/`stem.bn`; `conv_head`/`bn2` -> `features.conv`/`features.bn`;
  `classifier` -> `classifier.fc`;
- `blocks.<stage>.<i>` -> `layers.<stage>.block<i>`; inside, timm's first stage (DepthwiseSeparableConv: conv_dw, bn1,
  se, conv_pw, bn2) and the others (InvertedResidual: conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3) map onto our
  `expand`, `depsep`, `se.squeeze`/`se.expand` and `proj`;
- timm's SE convolutions are 1x1 convs (C, R, 1, 1); ours are Linear layers (C, R) unless built for TensorRT, so
  they are stored in Linear shape and `EfficientNet.adapt_state_dict` reshapes them back for the conv variant.

What else must match for equal outputs, and does not travel in a state dict:
- BatchNorm epsilon: timm's `efficientnet_*` use PyTorch's 1e-5, our default is upstream's 1e-3. Build ours with
  `bn_epsilon=1e-5` (efficientnet/main.py `--bn_epsilon 1e-5`) for timm's exact numbers; with 1e-3 the outputs
  drift slightly (BN divides by sqrt(var + eps)).
- SE width: a quarter of the block's *input* channels in both (timm's default se_from_exp=False); our WideSE
  variants squeeze the expanded width instead, so timm weights do not fit them (the shapes differ).
- Padding: both use symmetric PyTorch padding ((k - 1) // 2). timm's `tf_efficientnet_*` ports use TF "SAME"
  padding (Conv2dSame) and eps 1e-3 under the *same key names*; their weights load here, but the asymmetric
  padding of stride-2 convs is not reproduced, so their outputs differ. Only `efficientnet_*` weights are exact.
- Activation: SiLU (swish) everywhere in both; our `activation` must stay "silu".
- Stochastic depth and dropout only act in training; eval outputs do not depend on them.
"""
from __future__ import annotations

import re

import torch

from common.cli_errors import UserError

# Keys that together only timm's `EfficientNet` class writes (efficientnet_*, and its relatives mnasnet_*, mixnet_*:
# those convert too and then fail the strict load, which names the mismatched keys). MobileNetV3 has no bn2 after
# conv_head; our own models and upstream's name everything differently.
_TIMM_MARKERS = ("conv_stem.weight", "bn1.weight", "conv_head.weight", "bn2.weight")
_TIMM_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(.+)")

_TOP_LEVEL = {"conv_stem": "stem.conv", "bn1": "stem.bn", "conv_head": "features.conv", "bn2": "features.bn",
              "classifier": "classifier.fc"}
# timm's first stage has no expansion conv: its pointwise conv projects, as `conv_pwl` does in the others.
_DEPTHWISE_SEPARABLE = {"conv_dw": "depsep.conv", "bn1": "depsep.bn", "conv_pw": "proj.conv", "bn2": "proj.bn"}
_INVERTED_RESIDUAL = {"conv_pw": "expand.conv", "bn1": "expand.bn", "conv_dw": "depsep.conv", "bn2": "depsep.bn",
                      "conv_pwl": "proj.conv", "bn3": "proj.bn"}
_SQUEEZE_EXCITE = {"se.conv_reduce": "se.squeeze", "se.conv_expand": "se.expand"}


def is_timm_efficientnet_state_dict(state_dict: dict) -> bool:
    """Whether `state_dict` (module prefixes already stripped) is in timm's EfficientNet layout."""
    return all(k in state_dict for k in _TIMM_MARKERS) and any(
        _TIMM_BLOCK.fullmatch(k) and k.endswith("conv_dw.weight") for k in state_dict
    )


def _check_target(arch: str | None) -> None:
    from .registry import get_model_info

    if arch is None:
        return
    try:
        info = get_model_info(arch)
    except UserError:
        return  # a model built outside the registry: the strict load reports any mismatch
    if info.family != "efficientnet" or "widese" in info.name:
        raise UserError(f"these are timm EfficientNet weights (conv_stem, blocks.N.M...), which fit efficientnet-b0 "
                        f"... efficientnet-b7, not {info.name}: pick the EfficientNet of the same size")


def convert_timm_efficientnet(state_dict: dict[str, torch.Tensor], arch: str | None = None) -> dict[str, torch.Tensor]:
    """timm `efficientnet_bN` state dict -> ours for `efficientnet-bN` (`arch`, when given, is checked first)."""
    _check_target(arch)
    # A block is timm's InvertedResidual when it has the projecting conv_pwl, else a DepthwiseSeparableConv.
    blocks = (_TIMM_BLOCK.fullmatch(k) for k in state_dict)
    inverted = {m.group(1, 2) for m in blocks if m and m.group(3).startswith("conv_pwl.")}
    return {_rename(key, inverted): _linear_se(key, value) for key, value in state_dict.items()}


def _rename(key: str, inverted: set[tuple[str, str]]) -> str:
    block = _TIMM_BLOCK.fullmatch(key)
    if block is None:
        module, _, rest = key.partition(".")
        if module not in _TOP_LEVEL:
            raise UserError(f"unexpected key {key!r} in timm EfficientNet weights: not a timm efficientnet_bN file?")
        return f"{_TOP_LEVEL[module]}.{rest}"
    stage, index, inner = block.groups()
    table = _INVERTED_RESIDUAL if (stage, index) in inverted else _DEPTHWISE_SEPARABLE
    for names in (_SQUEEZE_EXCITE, table):
        for theirs, ours in names.items():
            if inner.startswith(theirs + "."):
                return f"layers.{stage}.block{index}.{ours}{inner[len(theirs):]}"
    raise UserError(f"unexpected key {key!r} in timm EfficientNet weights: not a timm efficientnet_bN file?")


def _linear_se(key: str, value: torch.Tensor) -> torch.Tensor:
    if key.endswith(("se.conv_reduce.weight", "se.conv_expand.weight")) and value.dim() == 4:
        return value.flatten(1)  # (C, R, 1, 1) -> (C, R)
    return value
