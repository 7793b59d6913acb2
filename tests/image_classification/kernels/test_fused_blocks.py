"""Fused block forwards (kernels.fused_blocks, built by inference.fused_model) against the BN-folded blocks they
replace, for every block kind of EfficientNet and GPUNet, at small shapes in float32 (and fp16 for one)."""
import copy

import pytest
import torch
import torch.nn as nn

from image_classification.inference.fast import fold_batchnorm
from image_classification.inference.fused_model import fuse_model, fused_block
from image_classification.kernels.fused_blocks import FusedEdgeResidual, FusedInvertedResidual
from image_classification.models import create_model, efficientnet, gpunet
from image_classification.models.layers import MBConvParts

from .helpers import TOLERANCE, channels_last, rel_error

NORM = dict(bn_momentum=0.1, bn_epsilon=1e-3)


def randomised(module: nn.Module) -> nn.Module:
    """Random BN statistics and affine terms, so that folding changes every weight and bias."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c) - 0.5)
            m.running_var.copy_(torch.rand(c) + 0.5)
            m.weight.data.copy_(torch.rand(c) + 0.5)
            m.bias.data.copy_(torch.rand(c) - 0.5)
    return module.eval()


def mbconv(k, cin, cout, expansion, stride, conv_se=False):
    return efficientnet.MBConvBlock(k, cin, cout, expansion, stride, wide_se=False, survival_prob=0.8,
                                    activation="silu", conv_se=conv_se, **NORM)


BLOCKS = {
    "mbconv k3 s1 residual": (lambda: mbconv(3, 16, 16, 4, 1), 16, FusedInvertedResidual),
    "mbconv k5 s2 no expansion, conv SE": (lambda: mbconv(5, 24, 16, 1, 2, conv_se=True), 24, FusedInvertedResidual),
    "gpunet irb k3 s1 SE relu residual": (lambda: gpunet.InvertedResidual(16, 16, 48, 3, 1, "relu", se_channels=4,
                                                                          drop_path_rate=0.1), 16,
                                          FusedInvertedResidual),
    "gpunet irb k5 s2 silu no SE": (lambda: gpunet.InvertedResidual(16, 24, 48, 5, 2, "swish"), 16,
                                    FusedInvertedResidual),
    "gpunet edge k3 s2 VALID": (lambda: gpunet.EdgeResidual(16, 24, 48, 3, 2, "relu",
                                                            padding=gpunet.tf_same_padding_quirk(3, 2)), 16,
                                FusedEdgeResidual),
    "gpunet edge k3 s1 SE residual": (lambda: gpunet.EdgeResidual(16, 16, 32, 3, 1, "swish", padding=1,
                                                                  se_channels=4, drop_path_rate=0.1), 16,
                                      FusedEdgeResidual),
}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_fused_block_matches_the_folded_block(kernel_device, name):
    make, channels, kind = BLOCKS[name]
    torch.manual_seed(0)
    folded = fold_batchnorm(randomised(make())).to(kernel_device).to(memory_format=torch.channels_last)
    fused = fused_block(folded)
    assert isinstance(fused, kind)
    x = channels_last(torch.randn(2, channels, 7, 6, device=kernel_device))
    with torch.no_grad():
        # float64, because on a GPU cuDNN's float32 convolutions run in TF32 (about 1e-3)
        got = fused(x)
        expected = copy.deepcopy(folded).double()(x.double())  # a copy: fused blocks share cuDNN's conv
    assert got.shape == expected.shape
    assert rel_error(got, expected) < TOLERANCE[torch.float32]


def test_fused_block_in_fp16(kernel_device):
    torch.manual_seed(0)
    block = fold_batchnorm(randomised(mbconv(3, 16, 16, 4, 1)))
    x = channels_last(torch.randn(2, 16, 7, 6, device=kernel_device))
    with torch.no_grad():
        expected = block.double().to(kernel_device)(x.double())
        half = block.half().to(kernel_device).to(memory_format=torch.channels_last)
        got = fused_block(half)(x.half())
    assert rel_error(got, expected) < 5 * TOLERANCE[torch.float16]  # three fp16 roundings of intermediates


def test_blocks_the_kernels_do_not_serve_stay():
    unfolded = randomised(mbconv(3, 16, 16, 4, 1))
    assert fused_block(unfolded) is None  # BatchNorm still there
    grouped = fold_batchnorm(randomised(gpunet.DistillInvertedResidual(16, 16, 3, 1, expansion=2, groups=2)))
    assert fused_block(grouped) is None  # grouped 1x1 convs (GPUNet's distill family)
    seven = fold_batchnorm(randomised(mbconv(7, 16, 16, 4, 1)))
    assert fused_block(seven) is None  # a 7x7 depthwise kernel


@pytest.mark.parametrize("name,count", [("efficientnet-b0", 16), ("gpunet-0", 10)])  # GPUNet-0: not its 2 ConvBnAct
def test_fuse_model_swaps_every_served_block(name, count):
    model = fold_batchnorm(create_model(name).eval())
    before = sum(isinstance(m, (efficientnet.MBConvBlock, gpunet.InvertedResidual, gpunet.EdgeResidual))
                 for m in model.modules())
    assert fuse_model(model) == count
    after = sum(isinstance(m, (efficientnet.MBConvBlock, gpunet.InvertedResidual, gpunet.EdgeResidual))
                for m in model.modules())
    assert after == before - count
    assert sum(isinstance(m, (FusedInvertedResidual, FusedEdgeResidual)) for m in model.modules()) == count


class ThirdFamilyBlock(nn.Module):
    """A block from no family the project ships, under names of its own: it is fused because it declares its parts
    (and its conv-BN pairs, for folding), not because fused_model knows its class."""

    conv_bn_pairs = (("widen", "widen_bn"), ("spatial", "spatial_bn"), ("narrow", "narrow_bn"))
    mbconv_parts = MBConvParts(expand=("widen", "widen_bn", "widen_act"), depthwise=("spatial", "spatial_bn", "relu"),
                               se="excite", project=("narrow", "narrow_bn"), residual="skip")

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.widen, self.widen_bn = nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden)
        self.widen_act = nn.SiLU()
        self.spatial = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False)
        self.spatial_bn, self.relu = nn.BatchNorm2d(hidden), nn.ReLU()
        self.excite = None
        self.narrow, self.narrow_bn = nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels)
        self.skip = nn.Identity()  # present: the block adds its input

    def forward(self, x):
        h = self.widen_act(self.widen_bn(self.widen(x)))
        h = self.relu(self.spatial_bn(self.spatial(h)))
        return x + self.narrow_bn(self.narrow(h))


def test_a_block_that_declares_its_parts_is_fused(kernel_device):
    torch.manual_seed(0)
    folded = fold_batchnorm(randomised(ThirdFamilyBlock(16, 32))).to(kernel_device)
    fused = fused_block(folded)
    assert isinstance(fused, FusedInvertedResidual)
    assert (fused.expand_act, fused.dw_act, fused.residual, fused.se) == ("silu", "relu", True, None)
    x = channels_last(torch.randn(2, 16, 7, 6, device=kernel_device))
    with torch.no_grad():
        got = fused(x)
        expected = copy.deepcopy(folded).double()(x.double())
    assert rel_error(got, expected) < TOLERANCE[torch.float32]
    undeclared = copy.deepcopy(folded)
    undeclared.__class__ = type("Undeclared", (ThirdFamilyBlock,), {"mbconv_parts": None})
    assert fused_block(undeclared) is None  # the same block without the declaration is left alone
