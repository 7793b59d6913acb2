"""torch.ops.image_classification.pointwise_conv against its PyTorch reference in float64. 3 samples of 5x5 pixels
make 75 rows: the first 64-row tile holds all three samples, so the scale must be gathered per row; 96 input
channels take two 64-deep steps (the second partial) and 24 outputs leave the output tile partial."""
import pytest
import torch

from image_classification.kernels import reference

from .helpers import TOLERANCE, channels_last, rel_error

OP = torch.ops.image_classification.pointwise_conv


def inputs(device, dtype, n=3, k=96, h=5, w=5, nout=24):
    x = channels_last(torch.randn(n, k, h, w, device=device).to(dtype))
    weight = (torch.randn(nout, k, device=device) / k ** 0.5).to(dtype)
    bias = torch.randn(nout, device=device).to(dtype)
    scale = torch.rand(n, k, device=device).to(dtype)
    residual = channels_last(torch.randn(n, nout, h, w, device=device).to(dtype))
    return x, weight, bias, scale, residual


def check(device, dtype, with_scale, with_residual, act, **shape):
    x, weight, bias, scale, residual = inputs(device, dtype, **shape)
    scale = scale if with_scale else None
    residual = residual if with_residual else None
    y = OP(x, weight, bias, scale, residual, act)
    def up(t):
        return t.double() if t is not None else None

    y_ref = reference.pointwise_conv(up(x), up(weight), up(bias), up(scale), up(residual), act)
    assert y.shape == y_ref.shape and y.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert rel_error(y, y_ref) < TOLERANCE[dtype]
    return y


@pytest.mark.parametrize("act", ["none", "relu", "silu"])
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("with_scale", [False, True])
def test_every_prologue_and_epilogue(kernel_device, with_scale, with_residual, act):
    check(kernel_device, torch.float32, with_scale, with_residual, act)


@pytest.mark.parametrize("with_scale,with_residual,act", [(True, True, "none"), (False, False, "silu")])
def test_fp16(kernel_device, with_scale, with_residual, act):
    check(kernel_device, torch.float16, with_scale, with_residual, act)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Triton's interpreter multiplies bf16 as raw integers "
                    "(it stores bf16 as uint16 and hands them to numpy's matmul); checked on the GPU")
def test_bf16(kernel_device):
    check(kernel_device, torch.bfloat16, True, True, "none")


def test_rows_that_straddle_samples_take_their_own_sample_scale(kernel_device):
    """Every sample holds the same pixels but gets its own gate: the outputs differ exactly as the gates do."""
    n, k, h, w, nout = 3, 32, 5, 5, 16
    x = channels_last(torch.randn(1, k, h, w, device=kernel_device).expand(n, k, h, w))
    weight = torch.randn(nout, k, device=kernel_device)
    bias = torch.zeros(nout, device=kernel_device)
    scale = torch.stack([torch.full((k,), v, device=kernel_device) for v in (0.0, 1.0, 2.0)])
    y = OP(x, weight, bias, scale, None, "none")
    assert float(y[0].abs().max()) == 0.0
    assert rel_error(y[2], 2 * y[1]) < 1e-6
    expected = reference.pointwise_conv(x[:1].double(), weight.double(), bias.double(), None, None, "none")[0]
    assert rel_error(y[1], expected) < 1e-5


def test_single_row_tiles_and_wide_outputs(kernel_device):
    """Batch 1 at 1x1 (a single row) and more outputs than one 128-wide tile."""
    check(kernel_device, torch.float32, True, True, "none", n=1, h=1, w=1, k=40, nout=200)


@pytest.mark.parametrize("which,message", [("weight", "weight"), ("scale", "scale"), ("residual", "residual")])
def test_wrong_shapes_are_refused(kernel_device, which, message):
    x, weight, bias, scale, residual = inputs(kernel_device, torch.float32)
    args = dict(weight=weight, scale=scale, residual=residual)
    args[which] = args[which][..., :-1]
    with pytest.raises(ValueError, match=message):
        OP(x, args["weight"], bias, args["scale"], args["residual"], "none")
