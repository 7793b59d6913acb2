"""The activations the kernels' epilogues apply, by name, and the codes the kernels are compiled for."""
from __future__ import annotations

import torch
import torch.nn.functional as F

ACT_CODES = {"none": 0, "relu": 1, "silu": 2}


def apply_activation(x: torch.Tensor, act: str) -> torch.Tensor:
    """The reference computation of an epilogue's activation."""
    if act == "relu":
        return F.relu(x)
    if act == "silu":
        return F.silu(x)
    if act == "none":
        return x
    raise ValueError(f"unknown activation {act!r}; the kernels apply {', '.join(ACT_CODES)}")
