"""GPUNet-0/1/2/P0/P1/D1/D2 with upstream's numerics, clean module names, and a remap to upstream's checkpoint keys.

Two module families, picked by the config's `distill` flag (which says nothing about knowledge distillation: the
"-D" configs P0/P1 use the plain family):

- plain: stem (3x3 s2 conv, BN eps 1e-3, act), ConvBnAct, InvertedResidual (MBConv, optional SE), EdgeResidual
  (fused MBConv), head (1x1 conv, BN, ReLU, pool, dropout, fc); hidden widths rounded with make_divisible.
- distill: stem (PrologueD) or a three-conv stem (PrologueLargeD), InvertedResidual with grouped 1x1 convs and
  unrounded hidden width (in * expansion), fused IRB, head with an extra 1x1 conv after pooling; BN eps 1e-5
  except in the fused IRB (1e-3), all ReLU.

Upstream quirk kept on purpose: a stride-2 plain `fused_irb` asks for TF-"same" padding, which upstream's conv
factory turns into padding 0 (VALID), so GPUNet-0 maps 320 px to 160, 79, 39, 20, 10. NGC weights assume it.

Our modules are named `stem`, `blocks.<i>` and `head` (with `blocks.<i>.conv_pw` etc. inside); upstream's names
(`network.stage: 1 layer3.conv.weight`, `network. layer15.net.6.weight`, `network.head:.net.0.weight`, ...) follow
from each layer's position in the JSON list and its stage, and `GPUNet.upstream_key_map` derives them the same way.
"""
from __future__ import annotations

import functools
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn as nn

from common.cli_errors import UserError

from .gpunet_archs import ARCHS
from .gpunet_config import GPUNetArch, LayerSpec, NetSpec, load_upstream_config
from .layers import (
    ConvBnPairs,
    MBConvParts,
    SENames,
    SqueezeExcitation,
    StochasticDepthResidual,
    make_activation,
    make_divisible,
)
from .registry import ModelInfo, register_model

PLAIN_BN_EPS = 1e-3
DISTILL_BN_EPS = 1e-5
DEFAULT_DROPOUT = 0.2
# Upstream's plain builder ramps drop-path linearly to 0.2 over the JSON list; its distill blocks never drop.
DEFAULT_DROP_PATH = {False: 0.2, True: 0.0}
SE_RATIO = 0.25
SE_NAMES = SENames(reduce="conv_reduce", activation="act1", expand="conv_expand", gate="gate")
DISTILL_HEAD_WIDTH = 1152  # EpilogueD's fixed 1x1 conv width before pooling

NGC_URL = "https://api.ngc.nvidia.com/v2/models/nvidia/dle/{}_pyt_ckpt/versions/21.12.0_amp/zip"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bn(channels: int, eps: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=eps)


def symmetric_padding(kernel_size: int, stride: int = 1) -> int:
    """PyTorch-style padding as upstream's conv factory computes it for pad_type ''."""
    return ((stride - 1) + (kernel_size - 1)) // 2


def tf_same_padding_quirk(kernel_size: int, stride: int) -> int:
    """Upstream's pad_type 'same': static padding when possible, otherwise *no* padding (it drops the dynamic-pad
    flag instead of building a Conv2dSame), so stride 2 becomes VALID."""
    if stride == 1 and (kernel_size - 1) % 2 == 0:
        return (kernel_size - 1) // 2
    return 0


class Renamed(nn.Module):
    """Base for blocks whose children map onto upstream's names; `upstream_names` holds the non-identical ones.
    Each block also declares its `conv_bn_pairs` (see layers.declared_conv_bn_pairs)."""

    upstream_names: ClassVar[dict[str, str]] = {}
    conv_bn_pairs: ClassVar[ConvBnPairs] = ()


def _squeeze_excitation(hidden: int, se_channels: int, act: str) -> SqueezeExcitation | None:
    """A block's SE under upstream's timm-style names, activation in place; None for a block without one."""
    return SqueezeExcitation(hidden, se_channels, act, names=SE_NAMES, inplace=True) if se_channels else None


def se_width(hidden: int, expansion: float) -> int:
    """Upstream's SE reduction: round(hidden * 0.25 / expansion), i.e. about a quarter of the block's input."""
    return round(hidden * (SE_RATIO / expansion))


def _residual(has_skip: bool, drop_path_rate: float) -> StochasticDepthResidual | None:
    # Per-sample drop path: a sample keeps the branch (scaled by 1/keep) or drops it, like upstream's drop_path.
    return StochasticDepthResidual(1.0 - drop_path_rate) if has_skip else None


# --- stems and heads ----------------------------------------------------------------------------------------------


class Stem(Renamed):
    """3x3 stride-2 conv, BN, activation (upstream Prologue, or PrologueD with ReLU and eps 1e-5)."""

    upstream_names = {"conv": "net.0", "bn": "net.1"}
    conv_bn_pairs = (("conv", "bn"),)

    def __init__(self, in_ch: int, out_ch: int, act: str, bn_eps: float):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False)
        self.bn = _bn(out_ch, bn_eps)
        self.act = make_activation(act, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class LargeStem(Renamed):
    """Three 3x3 conv-BN-ReLU, the first with stride 2 (upstream PrologueLargeD, GPUNet-D2)."""

    upstream_names = {"conv1": "net.0", "bn1": "net.1", "conv2": "net.3", "bn2": "net.4", "conv3": "net.6",
                      "bn3": "net.7"}
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, in_ch: int, out_ch: int, bn_eps: float = DISTILL_BN_EPS):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(out_ch, bn_eps)
        self.act1 = make_activation("relu", inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = _bn(out_ch, bn_eps)
        self.act2 = make_activation("relu", inplace=True)
        self.conv3 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn3 = _bn(out_ch, bn_eps)
        self.act3 = make_activation("relu", inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        return self.act3(self.bn3(self.conv3(x)))


class Head(Renamed):
    """1x1 conv, BN, ReLU (always, as upstream's Epilogue), global pool, dropout, fc."""

    upstream_names = {"conv": "net.0", "bn": "net.1", "fc": "net.6"}
    conv_bn_pairs = (("conv", "bn"),)

    def __init__(self, in_ch: int, features: int, num_classes: int, dropout: float, bn_eps: float = PLAIN_BN_EPS):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, features, 1, bias=False)
        self.bn = _bn(features, bn_eps)
        self.act = make_activation("relu", inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, num_classes)
        self.num_features = features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.act(self.bn(self.conv(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(x)))


class DistillHead(Renamed):
    """Upstream EpilogueD: 1x1 conv to 1152, BN, ReLU, pool, 1x1 conv (no bias, no BN) to `features`, ReLU, dropout,
    fc."""

    upstream_names = {"conv": "net.0", "bn": "net.1", "conv_proj": "net.4", "fc": "net.8"}
    conv_bn_pairs = (("conv", "bn"),)  # conv_proj has no BatchNorm

    def __init__(self, in_ch: int, features: int, num_classes: int, dropout: float, bn_eps: float = DISTILL_BN_EPS):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, DISTILL_HEAD_WIDTH, 1, bias=False)
        self.bn = _bn(DISTILL_HEAD_WIDTH, bn_eps)
        self.act = make_activation("relu", inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv_proj = nn.Conv2d(DISTILL_HEAD_WIDTH, features, 1, bias=False)
        self.act_proj = make_activation("relu", inplace=True)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, num_classes)
        self.num_features = features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.bn(self.conv(x))))
        return self.flatten(self.act_proj(self.conv_proj(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(x)))


# --- blocks -------------------------------------------------------------------------------------------------------


class ConvBnAct(Renamed):
    """k x k conv, BN, activation; no residual (upstream's builder never enables its skip)."""

    conv_bn_pairs = (("conv", "bn1"),)

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, act: str, bn_eps: float = PLAIN_BN_EPS):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, symmetric_padding(kernel_size, stride), bias=False)
        self.bn1 = _bn(out_ch, bn_eps)
        self.act1 = make_activation(act, inplace=True)
        self.residual_add = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


class InvertedResidual(Renamed):
    """MBConv: 1x1 expansion, k x k depthwise (stride), [SE], 1x1 projection; residual with drop path when the
    stride is 1 and the width is kept.

    Plain family (upstream InvertedResidual): hidden = make_divisible(in * expansion), symmetric padding, BN eps 1e-3,
    block activation, optional SE. Distill family: see `DistillInvertedResidual`.
    """

    conv_bn_pairs = (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"))
    mbconv_parts = MBConvParts(expand=("conv_pw", "bn1", "act1"), depthwise=("conv_dw", "bn2", "act2"), se="se",
                               project=("conv_pwl", "bn3"), residual="residual_add")

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        hidden: int,
        kernel_size: int,
        stride: int,
        act: str,
        *,
        se_channels: int = 0,
        groups: int = 1,
        bn_eps: float = PLAIN_BN_EPS,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.conv_pw = nn.Conv2d(in_ch, hidden, 1, groups=groups, bias=False)
        self.bn1 = _bn(hidden, bn_eps)
        self.act1 = make_activation(act, inplace=True)
        self.conv_dw = nn.Conv2d(hidden, hidden, kernel_size, stride, symmetric_padding(kernel_size, stride),
                                 groups=hidden, bias=False)
        self.bn2 = _bn(hidden, bn_eps)
        self.act2 = make_activation(act, inplace=True)
        self.se = _squeeze_excitation(hidden, se_channels, act)
        self.conv_pwl = nn.Conv2d(hidden, out_ch, 1, groups=groups, bias=False)
        self.bn3 = _bn(out_ch, bn_eps)
        self.residual_add = _residual(stride == 1 and in_ch == out_ch, drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_pw(x)))
        out = self.act2(self.bn2(self.conv_dw(out)))
        if self.se is not None:
            out = self.se(out)
        out = self.bn3(self.conv_pwl(out))
        return self.residual_add(x, out) if self.residual_add is not None else out


class DistillInvertedResidual(InvertedResidual):
    """Upstream Inverted_Residual_Block: hidden = in * expansion (unrounded), grouped 1x1 convs, ReLU, BN eps 1e-5,
    no SE; upstream keeps its children in one Sequential `body`."""

    upstream_names = {"conv_pw": "body.0", "bn1": "body.1", "conv_dw": "body.3", "bn2": "body.4",
                      "conv_pwl": "body.6", "bn3": "body.7"}

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int, groups: int,
                 drop_path_rate: float = 0.0):
        super().__init__(in_ch, out_ch, in_ch * expansion, kernel_size, stride, "relu", groups=groups,
                         bn_eps=DISTILL_BN_EPS, drop_path_rate=drop_path_rate)


class EdgeResidual(Renamed):
    """Fused MBConv: k x k expansion conv (stride), BN, act, [SE], 1x1 projection, BN; residual with drop path.

    Plain family (upstream EdgeResidual): hidden = make_divisible(in * expansion), upstream's 'same' padding quirk
    (VALID at stride 2), BN eps 1e-3. Distill family: see `DistillFusedIRB`.
    """

    conv_bn_pairs = (("conv_exp", "bn1"), ("conv_pwl", "bn2"))
    mbconv_parts = MBConvParts(expand=("conv_exp", "bn1", "act1"), depthwise=None, se="se",
                               project=("conv_pwl", "bn2"), residual="residual_add")

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        hidden: int,
        kernel_size: int,
        stride: int,
        act: str,
        *,
        padding: int,
        se_channels: int = 0,
        bn_eps: float = PLAIN_BN_EPS,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.conv_exp = nn.Conv2d(in_ch, hidden, kernel_size, stride, padding, bias=False)
        self.bn1 = _bn(hidden, bn_eps)
        self.act1 = make_activation(act, inplace=True)
        self.se = _squeeze_excitation(hidden, se_channels, act)
        self.conv_pwl = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self.bn2 = _bn(out_ch, bn_eps)
        self.residual_add = _residual(stride == 1 and in_ch == out_ch, drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_exp(x)))
        if self.se is not None:
            out = self.se(out)
        out = self.bn2(self.conv_pwl(out))
        return self.residual_add(x, out) if self.residual_add is not None else out


class DistillFusedIRB(EdgeResidual):
    """Upstream Fused_IRB (no shipped config uses it): hidden = in * expansion, padding k // 2, ReLU, BN eps 1e-3
    (sic, unlike the other distill modules), ungrouped convs; children in a Sequential `body`."""

    upstream_names = {"conv_exp": "body.0", "bn1": "body.1", "conv_pwl": "body.3", "bn2": "body.4"}

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int,
                 drop_path_rate: float = 0.0):
        super().__init__(in_ch, out_ch, in_ch * expansion, kernel_size, stride, "relu", padding=kernel_size // 2,
                         bn_eps=PLAIN_BN_EPS, drop_path_rate=drop_path_rate)


# --- the network --------------------------------------------------------------------------------------------------


def upstream_module_name(spec: NetSpec, layer_index: int) -> str:
    """The name upstream's builder gives `spec.layers[layer_index]` inside its `network` Sequential.

    Plain: 'head: {c}', 'stage: {stage} layer{c}', ' layer{c}' (tail, leading space); distill: 'head:',
    'stage: {stage} irb{c}', 'stage: {stage} fused_irb{c}', 'tail:'; c is the 1-based JSON position (data = 1).
    """
    layer = spec.layers[layer_index]
    c = spec.json_index(layer_index) + 1
    if spec.distill:
        if layer.kind in ("head", "head_large"):
            return "head:"
        if layer.kind == "tail":
            return "tail:"
        return f"stage: {layer.stage} {layer.kind}{c}"
    if layer.kind == "head":
        return f"head: {c}"
    if layer.kind == "tail":
        return f" layer{c}"
    return f"stage: {layer.stage} layer{c}"


class GPUNet(nn.Module):
    """stem -> blocks -> head, built from a validated `NetSpec`."""

    def __init__(
        self,
        spec: NetSpec,
        *,
        num_classes: int | None = None,
        dropout: float = DEFAULT_DROPOUT,
        drop_path_rate: float | None = None,
    ):
        super().__init__()
        num_classes = spec.tail.num_classes if num_classes is None else num_classes
        if drop_path_rate is None:
            drop_path_rate = DEFAULT_DROP_PATH[spec.distill]
        if not _is_number(dropout) or not 0.0 <= dropout < 1.0:
            raise UserError(f"GPUNet dropout must be in [0, 1), got {dropout!r}")
        if not _is_number(drop_path_rate) or not 0.0 <= drop_path_rate < 1.0:
            raise UserError(f"GPUNet drop_path_rate must be in [0, 1) (0 disables drop path), got {drop_path_rate!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise UserError(f"num_classes must be at least 1, got {num_classes!r}")
        self.spec = spec
        self.img_resolution = spec.resolution
        self.drop_path_rate = drop_path_rate
        self.stem = self._make_stem(spec.head, spec.distill)
        blocks = []
        for i, layer in enumerate(spec.layers[1:-1], start=1):
            # Upstream's ramp: the entry at 0-based JSON index j gets max_rate * j / (len(config) - 1); the JSON list
            # is our layers plus the data entry, so len(config) - 1 == len(spec.layers).
            rate = drop_path_rate * spec.json_index(i) / len(spec.layers)
            blocks.append(self._make_block(layer, spec.distill, rate))
        self.blocks = nn.Sequential(*blocks)
        head_cls = DistillHead if spec.distill else Head
        self.head = head_cls(spec.tail.in_channels, spec.tail.out_channels, num_classes, dropout)
        self.num_features = spec.tail.out_channels
        self.num_classes = num_classes

    @staticmethod
    def _make_stem(layer: LayerSpec, distill: bool) -> nn.Module:
        if layer.kind == "head_large":
            return LargeStem(layer.in_channels, layer.out_channels)
        return Stem(layer.in_channels, layer.out_channels, layer.act, DISTILL_BN_EPS if distill else PLAIN_BN_EPS)

    @staticmethod
    def _make_block(layer: LayerSpec, distill: bool, rate: float) -> nn.Module:
        k, s = layer.kernel_size, layer.stride
        if distill:
            if layer.kind == "irb":
                return DistillInvertedResidual(layer.in_channels, layer.out_channels, k, s, layer.expansion,
                                               layer.groups, drop_path_rate=rate)
            return DistillFusedIRB(layer.in_channels, layer.out_channels, k, s, layer.expansion, drop_path_rate=rate)
        if layer.kind == "conv":
            return ConvBnAct(layer.in_channels, layer.out_channels, k, s, layer.act)
        hidden = make_divisible(layer.in_channels * layer.expansion)
        se = se_width(hidden, layer.expansion) if layer.use_se else 0
        if layer.kind == "irb":
            return InvertedResidual(layer.in_channels, layer.out_channels, hidden, k, s, layer.act,
                                    se_channels=se, drop_path_rate=rate)
        return EdgeResidual(layer.in_channels, layer.out_channels, hidden, k, s, layer.act,
                            padding=tf_same_padding_quirk(k, s), se_channels=se, drop_path_rate=rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before the head (the input of upstream's tail)."""
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    # --- checkpoint compatibility, used by models.checkpoint ---
    classifier_keys = ("head.fc.weight", "head.fc.bias")

    def get_classifier(self) -> nn.Linear:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.head.fc = nn.Linear(self.num_features, num_classes)
        self.num_classes = num_classes

    def _top_modules(self) -> list[tuple[str, nn.Module, str]]:
        """(our prefix, module, upstream prefix) in network order."""
        tops = [("stem", self.stem, upstream_module_name(self.spec, 0))]
        tops += [(f"blocks.{i}", block, upstream_module_name(self.spec, i + 1)) for i, block in enumerate(self.blocks)]
        tops.append(("head", self.head, upstream_module_name(self.spec, len(self.spec.layers) - 1)))
        return tops

    def upstream_key_map(self) -> list[tuple[str, str]]:
        """(our key, upstream key) for every state_dict entry, in state_dict order."""
        rename = {}
        for prefix, module, upstream_prefix in self._top_modules():
            for key in module.state_dict():
                child, _, rest = key.partition(".")
                child = getattr(module, "upstream_names", {}).get(child, child)
                rename[f"{prefix}.{key}"] = f"network.{upstream_prefix}.{child}" + (f".{rest}" if rest else "")
        return [(key, rename[key]) for key in self.state_dict()]

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept upstream's key names (spaces, colons, `net.N`/`body.N`) as well as ours, which pass unchanged."""
        own = self.state_dict()
        from_upstream = {theirs: ours for ours, theirs in self.upstream_key_map()}
        return {(from_upstream.get(key, key) if key not in own else key): value for key, value in state_dict.items()}


def to_upstream_state_dict(model: GPUNet, state_dict: dict[str, torch.Tensor] | None = None) -> OrderedDict:
    """`model`'s state dict (or `state_dict`, in our names) under upstream's key names, in the same order."""
    state_dict = model.state_dict() if state_dict is None else state_dict
    return OrderedDict((theirs, state_dict[ours]) for ours, theirs in model.upstream_key_map())


# --- building and registration ------------------------------------------------------------------------------------

ConfigLike = GPUNetArch | NetSpec | str | os.PathLike | Sequence[dict]


def to_spec(config: ConfigLike, num_classes: int = 1000) -> NetSpec:
    """Normalise any architecture description: our table (GPUNetArch), a NetSpec, or upstream's JSON (path/list)."""
    if isinstance(config, NetSpec):
        return config
    if isinstance(config, GPUNetArch):
        return config.to_spec(num_classes)
    return load_upstream_config(config)


def build_gpunet(
    config: ConfigLike,
    *,
    num_classes: int | None = None,
    dropout: float = DEFAULT_DROPOUT,
    drop_path_rate: float | None = None,
) -> GPUNet:
    """A GPUNet from our table, a NetSpec or upstream's JSON; `num_classes` None keeps the config's class count."""
    return GPUNet(to_spec(config), num_classes=num_classes, dropout=dropout, drop_path_rate=drop_path_rate)


@functools.cache
def _registered_spec(name: str) -> NetSpec:
    return ARCHS[name].to_spec()


def _drop_path_from(drop_path_rate: float | None, survival_prob: float | None) -> float | None:
    """`survival_prob` is the EfficientNet spelling (minimum survival at the end of the ramp) = 1 - drop_path_rate."""
    if survival_prob is None:
        return drop_path_rate
    if not _is_number(survival_prob) or not 0.0 < survival_prob <= 1.0:
        raise UserError(f"survival_prob must be in (0, 1], got {survival_prob!r}")
    if drop_path_rate is not None and abs((1.0 - survival_prob) - drop_path_rate) > 1e-12:
        raise UserError(f"survival_prob {survival_prob} and drop_path_rate {drop_path_rate} disagree; give only one")
    return 1.0 - survival_prob


def _register(arch: GPUNetArch) -> None:
    def build(
        num_classes: int = 1000,
        *,
        dropout: float = DEFAULT_DROPOUT,
        drop_path_rate: float | None = None,
        survival_prob: float | None = None,
        model_config: str | os.PathLike | Sequence[dict] | None = None,
    ) -> GPUNet:
        """`model_config` (an upstream JSON path or list) replaces the built-in architecture; `num_classes` wins over
        the JSON's tail num_classes. drop_path_rate None is upstream's default (0.2 plain, 0 distill)."""
        spec = _registered_spec(arch.name) if model_config is None else load_upstream_config(model_config)
        model = GPUNet(spec, num_classes=num_classes, dropout=dropout,
                       drop_path_rate=_drop_path_from(drop_path_rate, survival_prob))
        if model_config is not None:
            model.metadata_overrides = {"input_size": (3, spec.resolution, spec.resolution)}
        return model

    build.__name__ = arch.name.replace("-", "_")
    register_model(
        ModelInfo(
            name=arch.name,
            family="gpunet",
            builder=build,
            input_size=arch.resolution,
            crop_pct=arch.crop_pct,
            interpolation="bicubic",
            # gpunet-quant-<x>: the quantization presets' names (launch.py --mode quantize); the network is the same.
            aliases=(arch.name.replace("-", "_"), arch.latency_key, arch.marketing_name,
                     arch.name.replace("gpunet-", "gpunet-quant-")),
            weights_url=NGC_URL.format(arch.ngc_id),
            # Upstream's zip unpacks to <latency key>.pth.tar.
            weights_file=f"{arch.latency_key}.pth.tar",
        )
    )


for _arch in ARCHS.values():
    _register(_arch)
