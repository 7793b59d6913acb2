"""torch.ops.image_classification.depthwise_conv against its PyTorch reference (cuDNN/ATen depthwise conv, bias,
activation, spatial mean) in float64, at small shapes that leave every tile partial (24 channels, 9x7 pixels)."""
import pytest
import torch

from image_classification.kernels import reference
from image_classification.kernels.ops import depthwise_taps

from .helpers import TOLERANCE, channels_last, rel_error

OP = torch.ops.image_classification.depthwise_conv


def inputs(device, dtype, n=2, c=24, h=9, w=7, k=3):
    x = channels_last(torch.randn(n, c, h, w, device=device).to(dtype))
    taps = depthwise_taps(torch.randn(c, 1, k, k, device=device)).to(dtype)
    return x, taps, torch.randn(c, device=device).to(dtype)


def check(device, dtype, k, stride, padding, act, pool=True, **shape):
    x, taps, bias = inputs(device, dtype, k=k, **shape)
    y, mean = OP(x, taps, bias, k, stride, padding, act, pool)
    y_ref, mean_ref = reference.depthwise_conv(x.double(), taps.double(), bias.double(), k, stride, padding, act,
                                               pool)
    assert y.shape == y_ref.shape and y.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert rel_error(y, y_ref) < TOLERANCE[dtype]
    if pool:
        assert mean.shape == (x.shape[0], x.shape[1]) and mean.dtype == torch.float32
        assert rel_error(mean, mean_ref) < TOLERANCE[dtype]
    else:
        assert mean.numel() == 0
    return y, mean


@pytest.mark.parametrize("act", ["none", "relu", "silu"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5])
def test_symmetric_padding_every_kernel_stride_and_activation(kernel_device, k, stride, act):
    check(kernel_device, torch.float32, k, stride, k // 2, act)


@pytest.mark.parametrize("k,stride", [(3, 2), (5, 2), (3, 1)])
def test_valid_padding(kernel_device, k, stride):
    """Padding 0 (what GPUNet's TF-'same' quirk gives at stride 2) shrinks the map: 9x7 -> 4x3 at k3 s2."""
    y, _ = check(kernel_device, torch.float32, k, stride, 0, "relu")
    assert y.shape[2:] == ((9 - k) // stride + 1, (7 - k) // stride + 1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("k,stride,act", [(3, 2, "silu"), (5, 1, "relu")])
def test_half_precision(kernel_device, dtype, k, stride, act):
    check(kernel_device, dtype, k, stride, k // 2, act)


def test_without_pool_the_mean_is_empty(kernel_device):
    check(kernel_device, torch.float32, 3, 1, 1, "silu", pool=False)


def test_one_pixel_maps_and_many_channel_tiles(kernel_device):
    """Batch-1 shapes at the end of a network: a 1x1 map (ambiguous strides) and channels over several tiles."""
    check(kernel_device, torch.float32, 3, 1, 1, "silu", n=1, c=200, h=1, w=1)
    check(kernel_device, torch.float32, 5, 2, 2, "relu", n=3, c=40, h=2, w=3)


def test_a_contiguous_nchw_input_gives_the_same_result(kernel_device):
    x, taps, bias = inputs(kernel_device, torch.float32)
    y_nhwc, mean_nhwc = OP(x, taps, bias, 3, 2, 1, "silu", True)
    y_nchw, mean_nchw = OP(x.contiguous(), taps, bias, 3, 2, 1, "silu", True)
    assert torch.equal(y_nhwc, y_nchw) and torch.equal(mean_nhwc, mean_nchw)


@pytest.mark.parametrize("k,stride,padding,message", [(7, 1, 3, "kernels"), (3, 3, 1, "strides"),
                                                      (3, 1, 3, "padding")])
def test_unserved_shapes_are_refused(kernel_device, k, stride, padding, message):
    x, _, bias = inputs(kernel_device, torch.float32)
    taps = torch.zeros(k * k, x.shape[1], device=kernel_device)
    with pytest.raises(ValueError, match=message):
        OP(x, taps, bias, k, stride, padding, "silu", True)


def test_a_weight_of_the_wrong_shape_is_refused(kernel_device):
    x, taps, bias = inputs(kernel_device, torch.float32)
    with pytest.raises(ValueError, match=r"weight_taps \[9, 24\]"):
        OP(x, taps.t().contiguous(), bias, 3, 1, 1, "silu", True)
