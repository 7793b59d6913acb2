"""What each op computes, written with plain PyTorch (cuDNN/cuBLAS convolutions and elementwise ops): the
tests compare the kernels with these, and the kernel benchmark times them, compiled, as the peer."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .activations import apply_activation


def depthwise_conv(x: torch.Tensor, weight_taps: torch.Tensor, bias: torch.Tensor, kernel_size: int, stride: int,
                   padding: int, act: str, pool: bool) -> tuple[torch.Tensor, torch.Tensor]:
    c = x.shape[1]
    weight = weight_taps.t().reshape(c, 1, kernel_size, kernel_size)
    y = apply_activation(F.conv2d(x, weight, bias, stride, padding, groups=c), act)
    mean = y.float().mean((2, 3)) if pool else x.new_empty((0,), dtype=torch.float32)
    return y, mean


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor | None,
                   residual: torch.Tensor | None, act: str) -> torch.Tensor:
    if scale is not None:
        x = x * scale[:, :, None, None]
    y = apply_activation(F.conv2d(x, weight[:, :, None, None], bias), act)
    return y + residual if residual is not None else y
