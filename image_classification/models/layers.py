"""Blocks shared by the model families."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import ClassVar, NamedTuple

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


# (conv, bn) child names: each conv's output feeds that bn and nothing else, so the bn can be folded into the conv.
ConvBnPairs = tuple[tuple[str, str], ...]


def declared_conv_bn_pairs(module: nn.Module) -> ConvBnPairs:
    """The (conv, bn) child-name pairs `module`'s class declares in `conv_bn_pairs` (empty if it declares none).

    Every block of the families declares its own, so code that rewrites blocks (inference.fast's BatchNorm folding
    of models torch.fx cannot trace) reads them here instead of knowing each family's classes.
    """
    return getattr(type(module), "conv_bn_pairs", ())


class MBConvParts(NamedTuple):
    """Where an MBConv-style block keeps its parts, as child paths ("depsep.conv"). A part whose module is None at
    run time (an expansion of ratio 1, a block without SE or without a skip) is absent from that block.

    Every MBConv-style block of the families declares one (`mbconv_parts`), so code that rebuilds blocks from their
    pieces (inference.fused_model, which swaps them for the fused Triton kernels) reads it here instead of knowing
    each family's classes."""

    expand: tuple[str, str, str]  # (conv, bn, activation): a 1x1 conv, or with depthwise None a full k x k conv
    depthwise: tuple[str, str, str] | None  # (conv, bn, activation); None for a fused MBConv (GPUNet's EdgeResidual)
    se: str  # the SqueezeExcitation, applied to the expanded (and depthwise) output
    project: tuple[str, str]  # (conv, bn): the 1x1 projection
    residual: str  # the residual add of input and projection


def declared_mbconv_parts(module: nn.Module) -> MBConvParts | None:
    """The `MBConvParts` that `module`'s class declares in `mbconv_parts`, or None for any other module."""
    return getattr(type(module), "mbconv_parts", None)


class ConvBnActSequential(nn.Sequential):
    """conv (no bias) -> bn -> [activation] under upstream ConvNets' child names (conv, bn, activation)."""

    conv_bn_pairs: ClassVar[ConvBnPairs] = (("conv", "bn"),)


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
) -> ConvBnActSequential:
    """conv (no bias) -> bn -> [activation]; padding defaults to (kernel_size - 1) // 2."""
    if padding is None:
        padding = (kernel_size - 1) // 2
    parts = OrderedDict(
        conv=nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
        bn=nn.BatchNorm2d(out_ch, eps=bn_epsilon, momentum=bn_momentum),
    )
    if act is not None:
        parts["activation"] = make_activation(act)
    return ConvBnActSequential(parts)


class SENames(NamedTuple):
    """The child names of a squeeze-excitation: they are its state_dict keys, so each family keeps its upstream's."""

    reduce: str
    activation: str
    expand: str
    gate: str | None  # None: the sigmoid is a function call, not a child module


class SqueezeExcitation(nn.Module):
    """Squeeze-excitation for both families: spatial mean, reduce to `squeeze_channels`, activation, expand back,
    sigmoid gate, then x * gate.

    What differs between the families is a parameter: `names` (EfficientNet: squeeze/activation/expand with a
    functional sigmoid; GPUNet: conv_reduce/act1/conv_expand and an nn.Sigmoid `gate`), `use_conv` (1x1 convs, or
    Linear layers on the pooled vector as upstream ConvNets' default SE) and `inplace` for the activation. The
    squeeze width is the caller's: each family rounds it its own way.
    """

    def __init__(self, channels: int, squeeze_channels: int, activation: str, *, names: SENames,
                 use_conv: bool = True, inplace: bool = False):
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1, bias=True)) if use_conv else nn.Linear
        self.use_conv = use_conv
        self.names = names
        self.add_module(names.reduce, layer(channels, squeeze_channels))
        self.add_module(names.activation, make_activation(activation, inplace=inplace))
        self.add_module(names.expand, layer(squeeze_channels, channels))
        if names.gate is not None:
            self.add_module(names.gate, nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=self.use_conv)
        for name in (self.names.reduce, self.names.activation, self.names.expand):
            s = getattr(self, name)(s)
        gate = torch.sigmoid(s) if self.names.gate is None else getattr(self, self.names.gate)(s)
        return self.scale(x, gate if self.use_conv else gate[:, :, None, None])

    def scale(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        # Its own method so that INT8 quantization can put quantizers on both inputs of the multiply.
        return x * gate


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
