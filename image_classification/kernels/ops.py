"""The kernels as `torch.library` custom ops, with fake implementations for torch.compile's tracing.

    torch.ops.image_classification.depthwise_conv(x, weight_taps, bias, kernel_size, stride, padding, act, pool)
        -> (y, se_mean)
    torch.ops.image_classification.pointwise_conv(x, weight, bias, scale, residual, act) -> y

Tensors are NCHW-shaped and channels_last in memory (other layouts are copied first); outputs are channels_last.
`weight_taps` is the depthwise weight as [k*k, C] (tap-major, so a tap's channels are contiguous: see
`depthwise_taps`); `se_mean` is the float32 spatial mean of `y`, [N, C], when `pool`, else empty. `weight` is the
1x1 weight as [C_out, C_in]; `scale` an optional [N, C_in] gate multiplied into the input; `residual` an optional
tensor shaped like the output, added last. `act` is "none", "relu" or "silu".

Written without `from __future__ import annotations`, and with typing.Optional, as torch.library reads the
schema from the annotations (older PyTorch releases only from these spellings).
"""
from typing import Optional

import torch

from .activations import ACT_CODES
from .availability import interpreting

NAMESPACE = "image_classification"
DEPTHWISE_KERNELS = (3, 5)
DEPTHWISE_STRIDES = (1, 2)


def depthwise_taps(weight: torch.Tensor) -> torch.Tensor:
    """A depthwise Conv2d weight [C, 1, k, k] as the ops take it: [k*k, C], contiguous."""
    c, _, kh, kw = weight.shape
    return weight.reshape(c, kh * kw).t().contiguous()


def output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


def _check_runnable(x: torch.Tensor, op: str) -> None:
    if not (x.is_cuda or interpreting()):
        raise RuntimeError(f"{NAMESPACE}::{op} runs Triton kernels: it needs a CUDA tensor, or TRITON_INTERPRET=1 "
                           f"(set before Triton is first used) for CPU tensors, got a {x.device.type} tensor")


def _check_act(act: str) -> None:
    if act not in ACT_CODES:
        raise ValueError(f"unknown activation {act!r}; the kernels apply {', '.join(ACT_CODES)}")


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _channels_last_empty(n: int, c: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    return like.new_empty((n, h, w, c)).permute(0, 3, 1, 2)


def _check_depthwise(x, weight_taps, bias, kernel_size, stride, padding, act):
    _check_act(act)
    if kernel_size not in DEPTHWISE_KERNELS or stride not in DEPTHWISE_STRIDES:
        raise ValueError(f"depthwise_conv serves kernels {DEPTHWISE_KERNELS} and strides {DEPTHWISE_STRIDES}, got "
                         f"kernel {kernel_size}, stride {stride}")
    c = x.shape[1]
    if tuple(weight_taps.shape) != (kernel_size * kernel_size, c) or tuple(bias.shape) != (c,):
        raise ValueError(f"depthwise_conv of {c} channels needs weight_taps [{kernel_size ** 2}, {c}] and bias "
                         f"[{c}], got {tuple(weight_taps.shape)} and {tuple(bias.shape)}")
    if not 0 <= padding < kernel_size:
        raise ValueError(f"depthwise_conv padding must be in [0, {kernel_size}), got {padding}")


@torch.library.custom_op(f"{NAMESPACE}::depthwise_conv", mutates_args=())
def depthwise_conv(x: torch.Tensor, weight_taps: torch.Tensor, bias: torch.Tensor, kernel_size: int, stride: int,
                   padding: int, act: str, pool: bool) -> tuple[torch.Tensor, torch.Tensor]:
    _check_depthwise(x, weight_taps, bias, kernel_size, stride, padding, act)
    _check_runnable(x, "depthwise_conv")
    from . import depthwise_conv_kernel as kernel

    return kernel.depthwise_conv(_nhwc(x), weight_taps.contiguous(), bias.contiguous(), kernel_size, stride,
                                 padding, act, pool)


@depthwise_conv.register_fake
def _(x, weight_taps, bias, kernel_size, stride, padding, act, pool):
    _check_depthwise(x, weight_taps, bias, kernel_size, stride, padding, act)
    n, c, h, w = x.shape
    oh, ow = output_size(h, kernel_size, stride, padding), output_size(w, kernel_size, stride, padding)
    mean = x.new_empty((n, c) if pool else (0,), dtype=torch.float32)
    return _channels_last_empty(n, c, oh, ow, x), mean


def _check_pointwise(x, weight, bias, scale, residual, act):
    _check_act(act)
    n, k, h, w = x.shape
    nout = weight.shape[0]
    if tuple(weight.shape) != (nout, k) or tuple(bias.shape) != (nout,):
        raise ValueError(f"pointwise_conv of {k} input channels needs weight [C_out, {k}] and bias [C_out], got "
                         f"{tuple(weight.shape)} and {tuple(bias.shape)}")
    if scale is not None and tuple(scale.shape) != (n, k):
        raise ValueError(f"pointwise_conv scale must be [{n}, {k}], got {tuple(scale.shape)}")
    if residual is not None and tuple(residual.shape) != (n, nout, h, w):
        raise ValueError(f"pointwise_conv residual must be {(n, nout, h, w)}, got {tuple(residual.shape)}")


@torch.library.custom_op(f"{NAMESPACE}::pointwise_conv", mutates_args=())
def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: Optional[torch.Tensor],  # noqa: UP045
                   residual: Optional[torch.Tensor], act: str) -> torch.Tensor:  # noqa: UP045
    _check_pointwise(x, weight, bias, scale, residual, act)
    _check_runnable(x, "pointwise_conv")
    from . import pointwise_conv_kernel as kernel

    return kernel.pointwise_conv(_nhwc(x), weight.contiguous(), bias.contiguous(),
                                 scale.contiguous() if scale is not None else None,
                                 _nhwc(residual) if residual is not None else None, act)


@pointwise_conv.register_fake
def _(x, weight, bias, scale, residual, act):
    _check_pointwise(x, weight, bias, scale, residual, act)
    n, _, h, w = x.shape
    return _channels_last_empty(n, weight.shape[0], h, w, x)
