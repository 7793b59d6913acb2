"""The fast inference path: BN folding for every registered model, the CPU predictor, compile caching, and (on a GPU)
real fp16 weights with a CUDA graph."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

from common.cli_errors import UserError
from image_classification.inference import fast
from image_classification.inference.fast import fold_batchnorm, prepare_for_inference
from image_classification.models import create_model, list_models
from tests.conftest import REPO


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread():
    """Small tensors: one intra-op thread is much faster on a shared 2-core machine than several fighting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters that still keep activations near unit scale.

    Random statistics on their own make deep EfficientNets blow up to 1e10 (where fp32 rounding, not folding,
    decides the comparison); so the statistics are first measured on a random batch, then perturbed per channel:
    variance x U(0.5, 2), mean + 0.1 sigma N(0, 1), gamma U(0.5, 1.5), beta 0.2 N(0, 1). A fold that ignored the mean,
    the variance, eps or the affine terms changes the logits far beyond the tolerance (see the sensitivity test).
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    with torch.no_grad():
        for bn in bns:
            c = bn.num_features
            bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(c, generator=g) * 0.2)
            bn.momentum = None  # a cumulative average: after one batch, the running stats are that batch's
            bn.reset_running_stats()
        model.train()
        model(torch.randn(4, 3, 64, 64, generator=g))
        for bn, momentum in zip(bns, momenta):
            c = bn.num_features
            bn.running_var.mul_(torch.rand(c, generator=g) * 1.5 + 0.5)
            bn.running_mean.add_(torch.randn(c, generator=g) * 0.1 * bn.running_var.sqrt())
            bn.momentum = momentum
    return model.eval()


def assert_close_logits(actual, expected, rtol=1e-4):
    scale = expected.abs().max().item()
    err = (actual.float() - expected.float()).abs().max().item()
    assert err <= rtol * max(scale, 1.0), f"max abs error {err:.3g} vs logits up to {scale:.3g}"


def bn_count(model):
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", list_models())
def test_fold_batchnorm_keeps_outputs_for_every_registered_model(name):
    # Seeded (initialisation draws from the global RNG) and compared in float64: folding is exact arithmetic, and in
    # fp32 the rounding through a deep random network decides the comparison once its logits grow large (the
    # kaiming-initialised conv SE of efficientnet-quant-* reaches 50+), whatever the test order left in the RNG.
    torch.manual_seed(0)
    model = randomise_batchnorm(create_model(name, num_classes=10)).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bns = bn_count(model)
    assert bns > 0
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)

    folded = fold_batchnorm(model)
    assert bn_count(folded) == 0
    assert type(folded) is type(model) and not folded.training
    assert folded.pretrained_cfg == model.pretrained_cfg
    with torch.no_grad():
        assert_close_logits(folded(x), expected)
        # any batch size and resolution, not only the traced one
        other = torch.randn(1, 3, 48, 40, dtype=torch.float64)
        assert_close_logits(folded(other), model(other))

    # the input model is untouched: same modules, same tensors
    assert bn_count(model) == bns
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)

    # the module walk that knows our blocks finds exactly the pairs the data flow says
    assert sorted(fast._pairs_from_modules(model)) == sorted(fast._pairs_from_fx(model))
    assert len(fast._pairs_from_fx(model)) == bns


def test_a_wrong_fold_would_be_caught(monkeypatch):
    """The randomised statistics are strong enough: a fold that forgets the running mean fails the comparison."""
    model = randomise_batchnorm(create_model("efficientnet-b0", num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    real = fast._fold_pair

    def forget_mean(conv, bn):
        bn.running_mean.zero_()
        real(conv, bn)

    monkeypatch.setattr(fast, "_fold_pair", forget_mean)
    with torch.no_grad():
        expected = model(x)
        with pytest.raises(AssertionError, match="max abs error"):
            assert_close_logits(fold_batchnorm(model)(x), expected)


class _ConvUsedTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y  # the conv's output is needed unnormalised too: this BN cannot be folded


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            return self.body(x)
        return self.body(-x)


def test_batchnorm_that_follows_no_conv_is_an_error_or_kept():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model = randomise_batchnorm(model)
    with pytest.raises(UserError, match=r"cannot fold 1 BatchNorm2d.*: 0;"):
        fold_batchnorm(model)
    kept = fold_batchnorm(model, strict=False)
    assert isinstance(kept[0], nn.BatchNorm2d) and isinstance(kept[2], nn.Identity)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert_close_logits(kept(x), model(x))

    shared = randomise_batchnorm(_ConvUsedTwice())
    with pytest.raises(UserError, match="used elsewhere"):
        fold_batchnorm(shared)
    with torch.no_grad():
        assert_close_logits(fold_batchnorm(shared, strict=False)(x), shared(x))


def test_untraceable_model_falls_back_to_the_module_walk():
    model = randomise_batchnorm(_Untraceable())
    with pytest.raises(UserError, match="torch.fx cannot trace"):
        fold_batchnorm(model, method="fx")
    folded = fold_batchnorm(model)  # auto
    assert bn_count(folded) == 0
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert_close_logits(folded(x), model(x))


@pytest.mark.parametrize("name", ["efficientnet-b0", "gpunet-d1"])
def test_cpu_predictor_matches_the_eager_model(name):
    model = randomise_batchnorm(create_model(name, num_classes=10))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    predictor = prepare_for_inference(model, device="cpu", precision="fp32")
    assert predictor.device == torch.device("cpu") and predictor.compile_seconds is None
    assert predictor.pretrained_cfg["architecture"] == name
    prepared = predictor.model
    assert bn_count(prepared) == 0 and not prepared.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in prepared.parameters())
    convs = [m for m in prepared.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)

    out = predictor(x)
    assert out.dtype == torch.float32 and out.shape == (3, 10)
    assert_close_logits(out, expected)
    # channels_last, float64 or non-contiguous inputs are normalised the same way
    assert_close_logits(predictor(x.to(memory_format=torch.channels_last)), expected)
    assert_close_logits(predictor(x.double()), expected)
    # the caller's model is untouched
    assert bn_count(model) > 0 and model.stem.conv.weight.is_contiguous()

    plain = prepare_for_inference(model, device="cpu", precision="fp32", fold_bn=False, channels_last=False)
    assert bn_count(plain.model) == bn_count(model)
    assert_close_logits(plain(x), expected)

    half = prepare_for_inference(model, device="cpu", precision="bf16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    out = half(x)
    assert out.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(out.flatten(), expected.flatten(), dim=0) > 0.98  # bf16: ~3 digits


def test_predictor_refuses_what_cpu_cannot_do():
    model = create_model("gpunet-0", num_classes=10)
    with pytest.raises(UserError, match="fp16 inference needs a CUDA device"):
        prepare_for_inference(model, device="cpu", precision="fp16")
    with pytest.raises(UserError, match="CUDA graphs need a CUDA device"):
        prepare_for_inference(model, device="cpu", precision="fp32", cuda_graph=True, batch_size=1)
    with pytest.raises(UserError, match="precision must be one of"):
        prepare_for_inference(model, device="cpu", precision="int8")
    with pytest.raises(UserError, match="unknown torch.compile mode 'fastest'"):
        prepare_for_inference(model, device="cpu", precision="fp32", compile="fastest")
    predictor = prepare_for_inference(model, device="cpu", precision="fp32")
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        predictor(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="float images"):
        predictor(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device is available"):
            prepare_for_inference(model, device="cuda", precision="fp16")


def test_triton_kernels_are_refused_where_they_cannot_run():
    model = create_model("gpunet-0", num_classes=10)
    with pytest.raises(UserError, match="kernels must be one of inductor, triton, got 'cutlass'"):
        prepare_for_inference(model, device="cpu", precision="fp32", kernels="cutlass")
    with pytest.raises(UserError, match="fused Triton kernels cannot be used: they run on a CUDA device, not cpu"):
        prepare_for_inference(model, device="cpu", precision="bf16", kernels="triton")
    if torch.cuda.is_available():
        with pytest.raises(UserError, match="fp16 and bf16, not float32"):
            prepare_for_inference(model, device="cuda", precision="fp32", kernels="triton")
        with pytest.raises(UserError, match="BN folding is off"):
            prepare_for_inference(model, device="cuda", precision="fp16", kernels="triton", fold_bn=False)
    assert prepare_for_inference(model, device="cpu", precision="fp32").fused_blocks == 0


COMPILE_SCRIPT = textwrap.dedent("""
    import json, torch
    from torch._dynamo.utils import counters
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from image_classification.models import create_model
    from image_classification.inference.fast import prepare_for_inference
    model = create_model("gpunet-0", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    p = prepare_for_inference(model, device="cpu", precision="fp32", compile="default", batch_size=2, image_size=32)
    err = (p(x) - expected).abs().max().item()
    print(json.dumps({"err": err, "compile_seconds": p.compile_seconds,
                      "hits": counters["inductor"]["fxgraph_cache_hit"],
                      "misses": counters["inductor"]["fxgraph_cache_miss"]}))
""")


@pytest.mark.skipif(not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")),
                    reason="torch.compile on CPU needs a C++ compiler (g++/c++ or $CXX)")
def test_compile_on_cpu_matches_and_a_second_process_reuses_the_cache(tmp_path):
    """Two fresh processes share IMAGE_CLASSIFICATION_CACHE: the first compiles, the second loads the cached graph."""
    env = dict(os.environ, IMAGE_CLASSIFICATION_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0 and ("CppCompileError" in proc.stderr or "InvalidCxxCompiler" in proc.stderr):
            pytest.skip("inductor cannot build C++ kernels here: " + proc.stderr.strip().splitlines()[-1])
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    for run in runs:
        assert run["err"] < 1e-4 and run["compile_seconds"] > 0
    assert cold["misses"] >= 1
    assert warm["hits"] >= 1 and warm["misses"] == 0, warm
    assert (tmp_path / "cache" / "inductor" / "fxgraph").is_dir()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compile_mode", [None, "default"])
def test_cuda_fp16_weights_and_cuda_graph(compile_mode):
    model = randomise_batchnorm(create_model("gpunet-0", num_classes=10))
    reference = model.cuda().eval()  # fp32 on the GPU; prepare_for_inference copies, so this stays fp32
    predictor = prepare_for_inference(model, device="cuda", precision="fp16", compile=compile_mode, cuda_graph=True,
                                      batch_size=4, image_size=64)
    assert next(reference.parameters()).dtype == torch.float32
    assert predictor.cuda_graph and predictor.graph_shape == (4, 3, 64, 64)
    assert next(predictor.eager_model.parameters()).dtype == torch.float16
    if compile_mode:
        assert predictor.compile_seconds > 0
    for seed in range(2):  # replays see the new input each time
        x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(seed))  # float32 on the CPU
        with torch.no_grad():
            expected = reference(x.cuda())
        out = predictor(x)
        assert out.dtype == torch.float32 and out.device.type == "cuda"
        assert_close_logits(out, expected, rtol=2e-2)
    first = predictor(x)
    predictor(torch.randn(4, 3, 64, 64))
    assert torch.equal(first, predictor(x)), "the returned logits must not alias the graph's static output"
    assert predictor.graph_misses == 0
    short = torch.randn(2, 3, 64, 64)  # a short last batch is padded into the graph, not recompiled
    with torch.no_grad():
        out = predictor(short)
        assert out.shape == (2, 10)
        assert_close_logits(out, reference(short.cuda()), rtol=2e-2)
    assert predictor.graph_misses == 0
    other = torch.randn(2, 3, 48, 48)  # another resolution runs uncaptured
    with torch.no_grad():
        assert_close_logits(predictor(other), reference(other.cuda()), rtol=2e-2)
    assert predictor.graph_misses == 1

    with pytest.raises(UserError, match="records its own CUDA graphs"):
        prepare_for_inference(model, device="cuda", compile="reduce-overhead", cuda_graph=True, batch_size=1)
    with pytest.raises(UserError, match="give the batch size"):
        prepare_for_inference(model, device="cuda", cuda_graph=True)


def test_unknown_inductor_option_is_one_clear_error():
    model = create_model("gpunet-0", num_classes=10)
    with pytest.raises(UserError, match="unknown TorchInductor option.*no_such_option"):
        prepare_for_inference(model, device="cpu", precision="fp32", compile="default",
                              compile_options={"no_such_option": True})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("batch_size", [1, 16])
def test_fast_predictor_matches_the_model(batch_size, capsys):
    from image_classification.inference.fast import fast_predictor

    model = randomise_batchnorm(create_model("efficientnet-b0", num_classes=10)).eval()
    predictor = fast_predictor(model, device="cuda", precision="fp16", batch_size=batch_size, image_size=64)
    line = capsys.readouterr().out
    assert "fast inference path" in line and "compiled in" in line and f"batch {batch_size}" in line
    assert predictor.compile_seconds > 0 and predictor.cuda_graph
    x = torch.randn(batch_size, 3, 64, 64)
    with torch.no_grad():
        assert_close_logits(predictor(x), model.cuda()(x.cuda()), rtol=2e-2)


def test_evaluate_accepts_a_predictor():
    """The evaluation loop (launch.py --evaluate) runs a Predictor as it runs a module, without autocast."""
    from image_classification.inference.evaluate import evaluate

    model = randomise_batchnorm(create_model("gpunet-0", num_classes=10)).eval()
    predictor = prepare_for_inference(model, device="cpu", precision="fp32", batch_size=4, image_size=32)
    torch.manual_seed(0)
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))), (torch.randn(2, 3, 32, 32),
                                                                         torch.randint(0, 10, (2,)))]
    fast = evaluate(predictor, batches, device=torch.device("cpu"), precision="bf16")  # bf16 autocast not applied
    plain = evaluate(model, batches, device=torch.device("cpu"), precision="fp32")
    assert fast["images"] == 6 and fast["top1"] == plain["top1"]
    assert fast["loss"] == pytest.approx(plain["loss"], rel=1e-4)
