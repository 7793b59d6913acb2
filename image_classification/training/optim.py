"""Optimizers with upstream's and timm's choices, and weight decay kept off BatchNorm and biases."""
from __future__ import annotations

import torch
import torch.nn as nn

from common.cli_errors import UserError


def param_groups(model: nn.Module, weight_decay: float, bn_weight_decay: bool) -> list[dict]:
    """Decay only weights of rank >= 2: BatchNorm scales/shifts and biases are 1-D (upstream matched names with
    "bn", which missed the SE and classifier biases)."""
    if bn_weight_decay:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# PyTorch optimizers with a fused CUDA kernel. Besides one kernel for the whole update, fused optimizers take the
# GradScaler's scale and inf flag on the device, so an AMP step no longer waits for the host to read `found_inf`.
FUSED = ("sgd", "adamw")


def kernel_options(name: str, fused_optimizer: str, device_type: str) -> dict:
    """{"fused": True} or {"foreach": True} (or {} for optimizers that have neither) for torch.optim."""
    if name not in FUSED + ("rmsprop",):
        if fused_optimizer == "on":
            raise UserError(f"--fused-optimizer on: optimizer {name} has no fused kernel (sgd and adamw do)")
        return {}
    if fused_optimizer == "off":
        return {"foreach": False}
    if name in FUSED and device_type == "cuda":
        return {"fused": True}
    if fused_optimizer == "on":
        raise UserError(f"--fused-optimizer on needs a CUDA device and sgd or adamw (got {name} on {device_type})")
    return {"foreach": True}


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.bn_weight_decay)
    name = cfg.optimizer
    device_type = next(model.parameters()).device.type
    kernels = kernel_options(name, getattr(cfg, "fused_optimizer", "auto"), device_type)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               **kernels)
    if name == "rmsprop":
        # PyTorch's RMSprop adds eps outside the square root; upstream used it as is.
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps,
                                   momentum=cfg.momentum, **kernels)
    if name == "rmsproptf":
        # TensorFlow's form (eps inside the square root), which the EfficientNet/GPUNet recipes were tuned with.
        from timm.optim import RMSpropTF

        return RMSpropTF(groups, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps, momentum=cfg.momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), **kernels)
    if name == "lamb":
        from timm.optim import Lamb

        return Lamb(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas))
    raise UserError(f"unknown optimizer {name!r}")
