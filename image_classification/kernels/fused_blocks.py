"""Inference forwards of BN-folded MBConv blocks built on the fused ops.

The reference block re-reads its widest tensor (the expanded one) about ten times: the expansion conv writes it, an
elementwise pass activates it, the depthwise conv reads and writes it, a pass activates and averages it for the SE,
another multiplies it by the gate, and the projection reads it. Here it moves four times: the expansion GEMM writes
it activated, the depthwise kernel reads it and writes its activated output with the SE sums, and the projection
GEMM reads it once, applying the gate as it loads and adding bias and residual as it stores.

These modules hold plain tensors (buffers), not the model's modules: `image_classification.inference.fused_model`
builds them from a folded model's blocks. They run the Triton ops, so they need a CUDA device (or Triton's
interpreter); exporters keep the plain modules.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops  # noqa: F401  (registers torch.ops.image_classification.*)
from .activations import ACT_CODES, apply_activation


def _check_act(act: str) -> str:
    if act not in ACT_CODES:
        raise ValueError(f"unknown activation {act!r}; the fused blocks apply {', '.join(ACT_CODES)}")
    return act


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 Conv2d or Linear weight as [out, in]."""
    return weight.detach().reshape(weight.shape[0], -1).contiguous()


def _bias(bias: torch.Tensor | None, channels: int, like: torch.Tensor) -> torch.Tensor:
    return like.new_zeros(channels) if bias is None else bias.detach().contiguous()


def _register_pointwise(module: nn.Module, name: str, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """A 1x1 convolution's (or Linear's) weight as an [out, in] matrix buffer `{name}_weight`, and its bias (zeros
    when it has none) as `{name}_bias`."""
    w = _matrix(weight)
    module.register_buffer(f"{name}_weight", w)
    module.register_buffer(f"{name}_bias", _bias(bias, w.shape[0], w))


class SqueezeExcitationGate(nn.Module):
    """The SE's tiny MLP on the pooled mean: sigmoid(expand(act(reduce(mean)))), [N, C] -> gate [N, C]."""

    def __init__(self, reduce_weight: torch.Tensor, reduce_bias: torch.Tensor | None, expand_weight: torch.Tensor,
                 expand_bias: torch.Tensor | None, act: str):
        super().__init__()
        _register_pointwise(self, "reduce", reduce_weight, reduce_bias)
        _register_pointwise(self, "expand", expand_weight, expand_bias)
        self.act = _check_act(act)

    def forward(self, mean: torch.Tensor) -> torch.Tensor:
        # The reference averages in the block's dtype; its MLP then runs in that dtype too.
        s = F.linear(mean.to(self.reduce_weight.dtype), self.reduce_weight, self.reduce_bias)
        return torch.sigmoid(F.linear(apply_activation(s, self.act), self.expand_weight, self.expand_bias))


class FusedInvertedResidual(nn.Module):
    """[1x1 expansion + act] -> depthwise k x k + act (+ SE mean) -> [SE gate] -> 1x1 projection [+ residual],
    as 2 or 3 Triton kernels and the gate's MLP.

    Weights are the folded convolutions' (BN already in weight and bias): expansion [hidden, in], depthwise
    [hidden, 1, k, k], projection [out, hidden]."""

    def __init__(self, *, expand_weight: torch.Tensor | None, expand_bias: torch.Tensor | None, expand_act: str,
                 dw_weight: torch.Tensor, dw_bias: torch.Tensor | None, stride: int, padding: int, dw_act: str,
                 se: SqueezeExcitationGate | None, proj_weight: torch.Tensor, proj_bias: torch.Tensor | None,
                 residual: bool):
        super().__init__()
        if expand_weight is not None:
            _register_pointwise(self, "expand", expand_weight, expand_bias)
        else:
            self.expand_weight = self.expand_bias = None
        self.expand_act = _check_act(expand_act)
        hidden, _, k, _ = dw_weight.shape
        self.register_buffer("dw_taps", ops.depthwise_taps(dw_weight.detach()))
        self.register_buffer("dw_bias", _bias(dw_bias, hidden, dw_weight))
        self.kernel_size, self.stride, self.padding = k, stride, padding
        self.dw_act = _check_act(dw_act)
        self.se = se
        _register_pointwise(self, "proj", proj_weight, proj_bias)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand_weight is not None:
            h = torch.ops.image_classification.pointwise_conv(h, self.expand_weight, self.expand_bias, None, None,
                                                              self.expand_act)
        h, mean = torch.ops.image_classification.depthwise_conv(h, self.dw_taps, self.dw_bias, self.kernel_size,
                                                                self.stride, self.padding, self.dw_act,
                                                                self.se is not None)
        gate = self.se(mean) if self.se is not None else None
        return torch.ops.image_classification.pointwise_conv(h, self.proj_weight, self.proj_bias, gate,
                                                             x if self.residual else None, "none")

    def extra_repr(self) -> str:
        return (f"expand={self.expand_weight is not None}, k={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, act={self.dw_act}, se={self.se is not None}, residual={self.residual}")


class FusedEdgeResidual(nn.Module):
    """Fused MBConv: the full k x k expansion conv stays cuDNN's (`conv`, folded, with its activation after it),
    then [SE gate] -> 1x1 projection [+ residual] as one Triton GEMM."""

    def __init__(self, *, conv: nn.Conv2d, act: str, se: SqueezeExcitationGate | None, proj_weight: torch.Tensor,
                 proj_bias: torch.Tensor | None, residual: bool):
        super().__init__()
        self.conv = conv
        self.act = _check_act(act)
        self.se = se
        _register_pointwise(self, "proj", proj_weight, proj_bias)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = apply_activation(self.conv(x), self.act)
        gate = self.se(h.float().mean((2, 3))) if self.se is not None else None
        return torch.ops.image_classification.pointwise_conv(h, self.proj_weight, self.proj_bias, gate,
                                                             x if self.residual else None, "none")

    def extra_repr(self) -> str:
        return f"act={self.act}, se={self.se is not None}, residual={self.residual}"
