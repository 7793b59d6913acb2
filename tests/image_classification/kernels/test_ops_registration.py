"""The ops as torch.library sees them: schema, fake (meta) implementations, and tracing by torch.compile."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from image_classification.kernels import unavailable_reason
from image_classification.kernels.ops import depthwise_taps

from .helpers import channels_last


def depthwise_args(device):
    x = channels_last(torch.randn(2, 16, 5, 5, device=device))
    return (x, depthwise_taps(torch.randn(16, 1, 3, 3, device=device)), torch.randn(16, device=device), 3, 2, 1,
            "silu", True)


def pointwise_args(device):
    x = channels_last(torch.randn(3, 40, 3, 3, device=device))
    return (x, torch.randn(16, 40, device=device), torch.randn(16, device=device), torch.rand(3, 40, device=device),
            channels_last(torch.randn(3, 16, 3, 3, device=device)), "none")


@pytest.mark.parametrize("op,make_args", [("depthwise_conv", depthwise_args), ("pointwise_conv", pointwise_args)])
def test_opcheck(kernel_device, op, make_args):
    """Schema, fake tensor and AOT-dispatch checks (the fake implementation agrees with the kernel on shapes,
    strides and dtypes)."""
    torch.library.opcheck(getattr(torch.ops.image_classification, op).default, make_args(kernel_device),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_fake_outputs_are_channels_last_with_the_strided_shape():
    with FakeTensorMode():
        y, mean = torch.ops.image_classification.depthwise_conv(*depthwise_args("cpu"))
        out = torch.ops.image_classification.pointwise_conv(*pointwise_args("cpu"))
    assert y.shape == (2, 16, 3, 3) and y.is_contiguous(memory_format=torch.channels_last)
    assert mean.shape == (2, 16) and mean.dtype == torch.float32
    assert out.shape == (3, 16, 3, 3) and out.is_contiguous(memory_format=torch.channels_last)


def test_torch_compile_traces_through_the_ops(kernel_device):
    def block(x, taps, bias, weight, proj_bias):
        h, mean = torch.ops.image_classification.depthwise_conv(x, taps, bias, 3, 1, 1, "relu", True)
        gate = torch.sigmoid(mean)
        return torch.ops.image_classification.pointwise_conv(h, weight, proj_bias, gate, x, "none")

    args = (channels_last(torch.randn(2, 16, 5, 5, device=kernel_device)),
            depthwise_taps(torch.randn(16, 1, 3, 3, device=kernel_device)), torch.randn(16, device=kernel_device),
            torch.randn(16, 16, device=kernel_device), torch.randn(16, device=kernel_device))
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    assert torch.allclose(compiled(*args), block(*args), rtol=1e-5, atol=1e-5)


def test_on_the_cpu_without_the_interpreter_the_ops_say_what_they_need(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA tensor, or TRITON_INTERPRET=1"):
        torch.ops.image_classification.depthwise_conv(*depthwise_args("cpu"))
    with pytest.raises(RuntimeError, match="CUDA tensor, or TRITON_INTERPRET=1"):
        torch.ops.image_classification.pointwise_conv(*pointwise_args("cpu"))


def test_unknown_activation_is_refused(kernel_device):
    args = list(pointwise_args(kernel_device))
    args[-1] = "gelu"
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        torch.ops.image_classification.pointwise_conv(*args)


def test_unavailable_reason(monkeypatch):
    assert "CUDA device, not cpu" in unavailable_reason("cpu", torch.float16)
    assert "fp16 and bf16, not float32" in unavailable_reason("cuda", torch.float32)
    assert unavailable_reason("cuda", torch.bfloat16) is None
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "Triton is not installed" in unavailable_reason("cuda", torch.float16)
