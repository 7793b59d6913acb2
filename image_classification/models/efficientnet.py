"""EfficientNet B0-B7 and WideSE, module for module as upstream ConvNets builds them, so NGC weights load as-is."""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from common.cli_errors import UserError

from .layers import (
    MBConvParts,
    SENames,
    SqueezeExcitation,
    StochasticDepthResidual,
    conv_bn_act,
    init_conv_weights,
    make_divisible,
    round_repeats,
)
from .registry import ModelInfo, register_model

# B0 per stage: kernel, stride, repeats, expansion, output channels.
B0_STAGES = (
    (3, 1, 1, 1, 16),
    (3, 2, 2, 6, 24),
    (5, 2, 2, 6, 40),
    (3, 2, 3, 6, 80),
    (5, 1, 3, 6, 112),
    (5, 2, 4, 6, 192),
    (3, 1, 1, 6, 320),
)
STEM_CHANNELS = 32
FEATURE_CHANNELS = 1280
SE_RATIO = 0.25
SE_NAMES = SENames(reduce="squeeze", activation="activation", expand="expand", gate=None)


@dataclass(frozen=True)
class Scaling:
    width: float
    depth: float
    resolution: int
    dropout: float
    survival_prob: float = 1.0


# Upstream keeps survival_prob 1.0 everywhere except B4; we keep its defaults so its recipes mean the same.
SCALING = {
    "b0": Scaling(1.0, 1.0, 224, 0.2),
    "b1": Scaling(1.0, 1.1, 240, 0.2),
    "b2": Scaling(1.1, 1.2, 260, 0.3),
    "b3": Scaling(1.2, 1.4, 300, 0.3),
    "b4": Scaling(1.4, 1.8, 380, 0.4, survival_prob=0.8),
    "b5": Scaling(1.6, 2.2, 456, 0.4),
    "b6": Scaling(1.8, 2.6, 528, 0.5),
    "b7": Scaling(2.0, 3.1, 600, 0.5),
}

NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/"
WEIGHTS_URLS = {
    "efficientnet-b0": NGC + "efficientnet_b0_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-b0_210412.pth",
    "efficientnet-b4": NGC + "efficientnet_b4_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-b4_210412.pth",
    "efficientnet-widese-b0": NGC
    + "efficientnet_widese_b0_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-widese-b0_210412.pth",
    "efficientnet-widese-b4": NGC
    + "efficientnet_widese_b4_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-widese-b4_210412.pth",
}


class MBConvBlock(nn.Module):
    mbconv_parts: ClassVar[MBConvParts] = MBConvParts(
        expand=("expand.conv", "expand.bn", "expand.activation"),
        depthwise=("depsep.conv", "depsep.bn", "depsep.activation"), se="se", project=("proj.conv", "proj.bn"),
        residual="residual_add")

    def __init__(
        self,
        kernel_size: int,
        in_channels: int,
        out_channels: int,
        expansion: int,
        stride: int,
        *,
        wide_se: bool,
        survival_prob: float,
        activation: str,
        bn_momentum: float,
        bn_epsilon: float,
        conv_se: bool,
    ):
        super().__init__()
        norm = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.expand = None if expansion == 1 else conv_bn_act(in_channels, hidden, 1, act=activation, **norm)
        self.depsep = conv_bn_act(hidden, hidden, kernel_size, stride, groups=hidden, act=activation, **norm)
        squeeze = max(1, int((hidden if wide_se else in_channels) * SE_RATIO))
        self.se = SqueezeExcitation(hidden, squeeze, activation, names=SE_NAMES, use_conv=conv_se)
        self.proj = conv_bn_act(hidden, out_channels, 1, act=None, **norm)
        self.residual_add = StochasticDepthResidual(survival_prob) if self.residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.proj(self.se(self.depsep(out)))
        return self.residual_add(x, out) if self.residual_add is not None else out


class EfficientNet(nn.Module):
    def __init__(
        self,
        scaling: Scaling,
        *,
        wide_se: bool = False,
        num_classes: int = 1000,
        dropout: float | None = None,
        survival_prob: float | None = None,
        activation: str = "silu",
        bn_momentum: float = 0.01,
        bn_epsilon: float = 1e-3,
        conv_init: str = "fan_in",
        trt: bool = False,
    ):
        super().__init__()
        dropout = scaling.dropout if dropout is None else dropout
        survival_prob = scaling.survival_prob if survival_prob is None else survival_prob
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 < survival_prob <= 1.0:
            raise ValueError(f"survival_prob must be in (0, 1], got {survival_prob}")
        norm = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)

        stem = make_divisible(STEM_CHANNELS * scaling.width)
        self.stem = conv_bn_act(3, stem, 3, stride=2, act=activation, **norm)

        repeats = [round_repeats(r, scaling.depth) for _, _, r, _, _ in B0_STAGES]
        total_blocks = sum(repeats)
        stages, in_ch, index = [], stem, 0
        for (k, s, _, e, c), r in zip(B0_STAGES, repeats):
            out_ch = make_divisible(c * scaling.width)
            blocks = OrderedDict()
            for j in range(r):
                # Deeper blocks are dropped more often: linear in the block's global index.
                p = 1.0 - (1.0 - survival_prob) * index / total_blocks
                blocks[f"block{j}"] = MBConvBlock(
                    k, in_ch if j == 0 else out_ch, out_ch, e, s if j == 0 else 1,
                    wide_se=wide_se, survival_prob=p, activation=activation, conv_se=trt, **norm,
                )
                index += 1
            stages.append(nn.Sequential(blocks))
            in_ch = out_ch
        self.layers = nn.Sequential(*stages)

        features = make_divisible(FEATURE_CHANNELS * scaling.width)
        self.features = conv_bn_act(in_ch, features, 1, act=activation, **norm)
        self.classifier = nn.Sequential(
            OrderedDict(
                pooling=nn.AdaptiveAvgPool2d(1),
                squeeze=nn.Flatten(),
                dropout=nn.Dropout(dropout),
                fc=nn.Linear(features, num_classes),
            )
        )
        self.num_features = features
        init_conv_weights(self, conv_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.layers(self.stem(x))))

    def extract_features(self, x: torch.Tensor, layers: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Intermediate outputs keyed layer1..layer7, features, classifier (upstream's names)."""
        wanted = set(layers or [f"layer{i + 1}" for i in range(len(self.layers))] + ["features", "classifier"])
        out, x = {}, self.stem(x)
        for i, stage in enumerate(self.layers):
            x = stage(x)
            if f"layer{i + 1}" in wanted:
                out[f"layer{i + 1}"] = x
        x = self.features(x)
        if "features" in wanted:
            out["features"] = x
        if "classifier" in wanted:
            out["classifier"] = self.classifier(x)
        return out

    # --- checkpoint compatibility, used by models.checkpoint ---
    classifier_keys = ("classifier.fc.weight", "classifier.fc.bias")

    def get_classifier(self) -> nn.Linear:
        return self.classifier.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier.fc = nn.Linear(self.num_features, num_classes)

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept upstream's spellings: old NGC `layerN.` names and SE weights in Linear or 1x1-conv shape."""
        own = self.state_dict()
        adapted = {}
        for key, value in state_dict.items():
            m = re.match(r"layer(\d+)\.(.*)", key)
            if m and key not in own:
                key = f"layers.{int(m.group(1)) - 1}.{m.group(2)}"
            if key.endswith(("se.squeeze.weight", "se.expand.weight")) and key in own:
                target = own[key].shape
                if value.dim() != len(target) and value.numel() == own[key].numel():
                    value = value.reshape(target)
            adapted[key] = value
        return adapted


def _register_quant(variant: str) -> None:
    """Upstream's efficientnet-quant-*: the FP32 network with the 1x1-conv SE, which upstream forced for INT8 (TensorRT
    runs the SE as convolutions). The quantizers themselves come from quant_main.py (image_classification.quantization),
    so these build and train in FP32 like any model, and take the FP32 weights of efficientnet-<variant>."""
    scaling = SCALING[variant]
    name = f"efficientnet-quant-{variant}"

    def build(*, trt: bool = True, **kwargs):
        if not trt:
            raise UserError(f"{name} always uses the 1x1-conv squeeze-excitation; for the Linear one (--trt false) "
                            f"use efficientnet-{variant}")
        return EfficientNet(scaling, trt=True, **kwargs)

    _register_info(name, scaling, build, quantized=True, weights_of=f"efficientnet-{variant}")


def _register(variant: str, wide_se: bool) -> None:
    scaling = SCALING[variant]
    name = f"efficientnet-{'widese-' if wide_se else ''}{variant}"

    def build(**kwargs):
        return EfficientNet(scaling, wide_se=wide_se, **kwargs)

    _register_info(name, scaling, build, weights_url=WEIGHTS_URLS.get(name))


def _register_info(name: str, scaling, build, **extra) -> None:
    build.__name__ = name.replace("-", "_")
    register_model(
        ModelInfo(
            name=name,
            family="efficientnet",
            builder=build,
            input_size=scaling.resolution,
            # Upstream validates with Resize(size + 32) then CenterCrop(size).
            crop_pct=scaling.resolution / (scaling.resolution + 32),
            interpolation="bicubic",
            aliases=(name.replace("-", "_"),),
            **extra,
        )
    )


for _variant in SCALING:
    _register(_variant, wide_se=False)
    _register(_variant, wide_se=True)
    _register_quant(_variant)
