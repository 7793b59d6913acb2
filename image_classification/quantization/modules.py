"""Quantizers on the inputs of the SE multiply and of the residual add.

modelopt replaces convolutions, linear layers and pooling by quantized versions on its own, but an elementwise op is
plain code in a forward, invisible to it. Upstream's quantized EfficientNet had quantizers there too
(`se.mul_a_quantizer`, `se.mul_b_quantizer`, `residual_quantizer`): with Q/DQ on both inputs of the SE multiply and on
the skip input of the add, TensorRT runs the multiply in INT8 and fuses the add into the projection convolution
before it, instead of falling back to FP16/FP32 around them. These classes are registered with modelopt, which swaps
them in for the originals when it quantizes a model (and again when a checkpoint's quantizer state is restored).
Imported only through backend.import_modelopt: it needs modelopt.
"""
from __future__ import annotations

import torch
from modelopt.torch.quantization.nn import TensorQuantizer

from image_classification.models.layers import SqueezeExcitation, StochasticDepthResidual


class QuantSE(SqueezeExcitation):
    """Both inputs of `x * gate` quantized (the SE routes its multiply through `scale`), in either family."""

    def _setup(self):
        self.mul_a_quantizer = TensorQuantizer()
        self.mul_b_quantizer = TensorQuantizer()

    def scale(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.mul_a_quantizer(x) * self.mul_b_quantizer(gate)


class QuantResidual(StochasticDepthResidual):
    """Only the skip input is quantized: the branch is the projection convolution's output, which TensorRT fuses
    with the add (the convolution then reads the INT8 skip tensor as its residual input)."""

    def _setup(self):
        self.residual_quantizer = TensorQuantizer()

    def forward(self, residual: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return super().forward(self.residual_quantizer(residual), branch)


# The shared blocks of models/layers.py, so every family that uses them is covered.
QUANTIZED_MODULES = (
    (SqueezeExcitation, QuantSE),
    (StochasticDepthResidual, QuantResidual),
)


def register_quantized_modules(mtq) -> None:
    for original, quantized in QUANTIZED_MODULES:
        if original not in mtq.QuantModuleRegistry:
            mtq.register(original_cls=original, quantized_cls=quantized)
