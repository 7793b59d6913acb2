"""Swap a BN-folded model's MBConv blocks for the fused-kernel forwards of `image_classification.kernels`.

    folded = fold_batchnorm(model).cuda().half().to(memory_format=torch.channels_last)
    fuse_model(folded)       # in place; returns how many blocks now run the Triton kernels

Blocks the kernels serve are those that declare their parts (`models.layers.MBConvParts`): EfficientNet's MBConvBlock
and GPUNet's InvertedResidual (1x1 expansion, depthwise 3x3 or 5x5 at stride 1 or 2, optional SE, 1x1 projection,
optional residual) and EdgeResidual (its full k x k conv stays cuDNN's; SE and projection run fused). A block is left as
it is when its BatchNorms are not folded, its 1x1 convs are grouped (GPUNet's distill family), or its shape or
activation is one the kernels do not serve; the model stays correct either way. Only for inference: the residual skips
the stochastic depth of training.
"""
from __future__ import annotations

import torch.nn as nn

from image_classification.kernels import ops
from image_classification.kernels.fused_blocks import FusedEdgeResidual, FusedInvertedResidual, SqueezeExcitationGate
from image_classification.models.layers import OnnxSiLU, SqueezeExcitation, declared_mbconv_parts

_ACTIVATIONS = ((nn.SiLU, "silu"), (OnnxSiLU, "silu"), (nn.ReLU, "relu"))


def _act(module: nn.Module) -> str | None:
    return next((name for cls, name in _ACTIVATIONS if isinstance(module, cls)), None)


def _folded(conv: nn.Module, bn: nn.Module) -> bool:
    return isinstance(conv, nn.Conv2d) and isinstance(bn, nn.Identity) and conv.bias is not None


def _pointwise(conv: nn.Conv2d) -> bool:
    return conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1


def _depthwise(conv: nn.Conv2d) -> bool:
    k, s, p = conv.kernel_size, conv.stride, conv.padding
    return (isinstance(p, tuple) and conv.groups == conv.in_channels == conv.out_channels and k[0] == k[1]
            and k[0] in ops.DEPTHWISE_KERNELS and s[0] == s[1] and s[0] in ops.DEPTHWISE_STRIDES and p[0] == p[1]
            and conv.dilation == (1, 1))


def _se_gate(se: nn.Module | None) -> SqueezeExcitationGate | None | bool:
    """The SE's MLP as a gate module; None when there is no SE; False when it is one the kernels cannot take."""
    if se is None:
        return None
    if not isinstance(se, SqueezeExcitation):
        return False
    reduce, act, expand = (getattr(se, name) for name in (se.names.reduce, se.names.activation, se.names.expand))
    if se.names.gate is not None and not isinstance(getattr(se, se.names.gate), nn.Sigmoid):
        return False
    if _act(act) is None or any(isinstance(m, nn.Conv2d) and not _pointwise(m) for m in (reduce, expand)):
        return False
    return SqueezeExcitationGate(reduce.weight, reduce.bias, expand.weight, expand.bias, _act(act))


def _part(block: nn.Module, path: str) -> nn.Module | None:
    """The module at dotted `path` under `block`, or None where a module on the way is None (an absent part)."""
    module = block
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def _parts(block: nn.Module, paths: tuple[str, ...] | None) -> tuple | None:
    """The modules of one declared part (conv, bn[, activation]), or None when the part is absent."""
    if paths is None:
        return None
    modules = tuple(_part(block, path) for path in paths)
    return None if any(m is None for m in modules) else modules


def _inverted_residual(expand: tuple | None, dw: tuple, gate: SqueezeExcitationGate | None, proj: tuple,
                       residual: bool) -> FusedInvertedResidual | None:
    """expand/dw: (conv, bn, activation); proj: (conv, bn)."""
    if not (_folded(*dw[:2]) and _depthwise(dw[0]) and _act(dw[2])):
        return None
    if expand is not None and not (_folded(*expand[:2]) and _pointwise(expand[0]) and _act(expand[2])):
        return None
    conv_dw = dw[0]
    return FusedInvertedResidual(
        expand_weight=expand[0].weight if expand else None, expand_bias=expand[0].bias if expand else None,
        expand_act=_act(expand[2]) if expand else "none",
        dw_weight=conv_dw.weight, dw_bias=conv_dw.bias, stride=conv_dw.stride[0], padding=conv_dw.padding[0],
        dw_act=_act(dw[2]), se=gate, proj_weight=proj[0].weight, proj_bias=proj[0].bias, residual=residual)


def _edge_residual(conv: tuple | None, gate: SqueezeExcitationGate | None, proj: tuple,
                   residual: bool) -> FusedEdgeResidual | None:
    """conv: the full k x k expansion (conv, bn, activation); proj: (conv, bn)."""
    if conv is None or not _folded(*conv[:2]) or not _act(conv[2]):
        return None
    return FusedEdgeResidual(conv=conv[0], act=_act(conv[2]), se=gate, proj_weight=proj[0].weight,
                             proj_bias=proj[0].bias, residual=residual)


def fused_block(block: nn.Module) -> nn.Module | None:
    """The fused-kernel replacement of one folded block, or None when the kernels do not serve it. Blocks say where
    their parts are (`models.layers.MBConvParts`); any block that declares none is left alone."""
    parts = declared_mbconv_parts(block)
    if parts is None:
        return None
    gate = _se_gate(_part(block, parts.se))
    proj = _parts(block, parts.project)
    if gate is False or proj is None or not _folded(*proj) or not _pointwise(proj[0]):
        return None
    residual = _part(block, parts.residual) is not None
    expand = _parts(block, parts.expand)
    if parts.depthwise is None:
        return _edge_residual(expand, gate, proj, residual)
    dw = _parts(block, parts.depthwise)
    return None if dw is None else _inverted_residual(expand, dw, gate, proj, residual)


def fuse_model(model: nn.Module) -> int:
    """Replace, in place, every block of a BN-folded eval-mode `model` that the fused kernels serve; returns how
    many were replaced."""
    replacements = []
    for name, module in model.named_modules():
        fused = fused_block(module)
        if fused is not None:
            replacements.append((name, fused))
    for name, fused in replacements:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, fused)
    return len(replacements)
