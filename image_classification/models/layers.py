"""Blocks shared by the model families."""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn


class OnnxSiLU(nn.Module):
    """x * sigmoid(x) spelled out, for exporters that lack a SiLU op (upstream's "onnx-silu")."""

    def forward(self, x):
        return x * torch.sigmoid(x)


ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "relu": nn.ReLU, "onnx-silu": OnnxSiLU}


def make_activation(name: str, *, inplace: bool = False) -> nn.Module:
    """The activation module for `name`, for both families. GPUNet's run in place, as upstream's do (a block's
    activation overwrites the BatchNorm output, which nothing else reads); the spelled-out onnx-silu has no in-place
    form and always returns a new tensor."""
    try:
        cls = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None
    return cls() if cls is OnnxSiLU else cls(inplace=inplace)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never more than 10% below the exact value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def conv_bn_act(
    in_ch: int,
    out_ch: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    act: str | None = "silu",
    bn_momentum: float = 0.01,
    bn_epsilon: float = 1e-3,
    padding: int | None = None,
) -> nn.Sequential:
    """conv (no bias) -> bn -> [activation], with upstream's submodule names (conv, bn, activation)."""
    if padding is None:
        padding = (kernel_size - 1) // 2
    parts = OrderedDict(
        conv=nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
        bn=nn.BatchNorm2d(out_ch, eps=bn_epsilon, momentum=bn_momentum),
    )
    if act is not None:
        parts["activation"] = make_activation(act)
    return nn.Sequential(parts)


class StochasticDepthResidual(nn.Module):
    """residual + branch, with the branch dropped per *sample* during training.

    Upstream drew one scalar per forward pass, so the whole batch kept or dropped the branch together; TF and timm
    drop per sample, which is what the published survival probabilities were tuned for.
    """

    def __init__(self, survival_prob: float):
        super().__init__()
        if not 0.0 < survival_prob <= 1.0:
            raise ValueError(f"survival probability must be in (0, 1], got {survival_prob}")
        self.survival_prob = survival_prob

    def forward(self, residual: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        if not self.training or self.survival_prob == 1.0:
            return residual + branch
        keep = torch.empty((branch.shape[0],) + (1,) * (branch.dim() - 1), dtype=branch.dtype, device=branch.device)
        keep.bernoulli_(self.survival_prob)
        return torch.addcmul(residual, branch, keep, value=1.0 / self.survival_prob)

    def extra_repr(self) -> str:
        return f"survival_prob={self.survival_prob:.4f}"


def init_conv_weights(module: nn.Module, mode: str = "fan_in") -> None:
    """Kaiming-normal convolutions and unit BatchNorm, as upstream's builder does."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"conv_init must be fan_in or fan_out, got {mode!r}")
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def round_repeats(repeats: int, depth_coef: float) -> int:
    return int(math.ceil(repeats * depth_coef))
