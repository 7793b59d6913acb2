"""The fused Triton kernels at full shapes on the GPU (`nox -s gpu`): every distinct MBConv block of
EfficientNet-B0 (224 px) and GPUNet-0 (320 px), whole networks, and the fast path with kernels="triton".

fp16 tolerance: the fused block is compared with the folded block computed in float32 from the same (fp16) weights
and inputs, and must be no worse than twice the error of the plain fp16 block (cuDNN and PyTorch's elementwise ops,
which round the same intermediates) and never worse than 1e-2 relative (norm). fp16 keeps 11 significant bits, so
each rounded intermediate adds about 3e-4; the fused block rounds fewer of them than the plain one.
"""
import copy
import importlib.util

import pytest
import torch
import torch.nn as nn

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton"),
]

MODELS = {"efficientnet-b0": 224, "gpunet-0": 320}
CEILING = 1e-2


@pytest.fixture(autouse=True)
def exact_float32(monkeypatch):
    """float32 references in float32, not TF32 (cuDNN's default on Ampere and later)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def randomised(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


def folded_model(name: str) -> nn.Module:
    from image_classification.inference.fast import fold_batchnorm
    from image_classification.models import create_model

    torch.manual_seed(0)
    return fold_batchnorm(randomised(create_model(name)))


def rel_error(out, ref) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def block_inputs(model: nn.Module, size: int) -> dict[str, tuple]:
    """Each fusable block's input shape (C, H, W) at `size` px."""
    from image_classification.inference.fused_model import fused_block

    shapes = {}

    def record(key):
        def hook(module, inputs):
            shapes.setdefault(key, tuple(inputs[0].shape[1:]))
        return hook

    hooks = [m.register_forward_pre_hook(record(k)) for k, m in model.named_modules() if fused_block(m) is not None]
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    return shapes


def errors(block: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> tuple[float, float]:
    """(fused error, plain error) of `block` in `dtype` against float32, on the same rounded input."""
    from image_classification.inference.fused_model import fused_block

    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    low = copy.deepcopy(block).cuda().to(dtype).to(memory_format=torch.channels_last)
    reference = copy.deepcopy(low).float()  # float32 from the same rounded weights
    with torch.inference_mode():
        expected = reference(x.float())
        plain = low(x)
        fused = fused_block(low)(x)
    return rel_error(fused, expected), rel_error(plain, expected)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_block_at_full_shape_fp16(name):
    model = folded_model(name)
    worst = []
    for key, shape in block_inputs(model, MODELS[name]).items():
        x = torch.randn(8, *shape, device="cuda")
        fused, plain = errors(model.get_submodule(key), x, torch.float16)
        worst.append((key, fused, plain))
        assert fused < min(CEILING, max(2 * plain, 1e-3)), (key, fused, plain)
    print(name, [(k, f"{f:.1e}", f"{p:.1e}") for k, f, p in worst])


@pytest.mark.parametrize("name", list(MODELS))
def test_whole_network_fused_matches_the_folded_network(name):
    from image_classification.inference.fused_model import fuse_model

    model = folded_model(name).cuda().half().to(memory_format=torch.channels_last)
    reference = copy.deepcopy(model).float()
    fused = copy.deepcopy(model)
    assert fuse_model(fused) > 0
    x = torch.randn(4, 3, MODELS[name], MODELS[name], device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = reference(x.float())
        err_fused = rel_error(fused(x.half()), expected)
        err_plain = rel_error(model(x.half()), expected)
    assert err_fused < min(CEILING, max(2 * err_plain, 1e-3)), (err_fused, err_plain)


def test_inductor_compiles_a_fused_block():
    from image_classification.inference.fused_model import fused_block

    model = folded_model("efficientnet-b0")
    block = model.get_submodule("layers.4.block1").cuda().half().to(memory_format=torch.channels_last)
    fused = fused_block(block)
    x = torch.randn(16, 112, 14, 14, device="cuda").half().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = fused(x)
        compiled = torch.compile(fused, fullgraph=True)(x)
    assert rel_error(compiled, eager) < 1e-3


def test_prepare_for_inference_with_triton_kernels_and_a_cuda_graph():
    from image_classification.inference.fast import prepare_for_inference
    from image_classification.models import create_model

    torch.manual_seed(0)
    model = randomised(create_model("efficientnet-b0"))
    predictor = prepare_for_inference(model, device="cuda", precision="fp16", kernels="triton", cuda_graph=True,
                                      batch_size=4, image_size=224)
    plain = prepare_for_inference(model, device="cuda", precision="fp16", cuda_graph=True, batch_size=4,
                                  image_size=224)
    assert predictor.fused_blocks == 16 and plain.fused_blocks == 0
    x = torch.randn(3, 3, 224, 224)  # a short batch replays the graph, padded
    reference = model.cuda().float()(x.cuda())
    out = predictor(x)
    assert predictor.graph_misses == 0
    assert rel_error(out, reference) < min(CEILING, max(2 * rel_error(plain(x), reference), 1e-3))


def test_every_block_at_batch_1_bf16():
    name = "efficientnet-b0"  # bf16 compiles every kernel again: one network is enough
    model = folded_model(name)
    for key, shape in block_inputs(model, MODELS[name]).items():
        fused, plain = errors(model.get_submodule(key), torch.randn(1, *shape, device="cuda"), torch.bfloat16)
        assert fused < max(2 * plain, 1e-3) and fused < 5e-2, (key, fused, plain)
