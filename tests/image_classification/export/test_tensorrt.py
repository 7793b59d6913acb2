"""TensorRT engines: one-line errors without TensorRT, the builder settings (checked against a stand-in module
that records what it is asked), and a real FP16 build on a GPU where TensorRT is installed."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch

from common.cli_errors import UserError, run_cli
from tests.conftest import REPO, assert_one_line_error

HINT = "pip install tensorrt from NVIDIA's index, or use an NGC container"


# --- without TensorRT ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails even where it is installed


def test_every_entry_point_says_tensorrt_is_missing(no_tensorrt, tmp_path):
    from image_classification.export import tensorrt as T

    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not used")
    calls = [
        lambda: T.build_engine(onnx_file, tmp_path / "m.plan"),
        lambda: T.load_engine(tmp_path / "m.plan"),
        lambda: T.TensorRTRunner(tmp_path / "m.plan"),
    ]
    for call in calls:
        with pytest.raises(UserError) as info:
            call()
        message = str(info.value)
        assert message.startswith("TensorRT is not installed: ") and HINT in message and "\n" not in message
    assert not (tmp_path / "m.plan").exists()


def test_cli_without_tensorrt_is_one_line(tmp_path):
    code = ("import runpy, sys; sys.modules['tensorrt'] = None; "
            f"sys.argv = ['tensorrt', '--onnx', {str(tmp_path / 'm.onnx')!r}, '--fp16', '--max-batch', '8']; "
            "runpy.run_module('image_classification.export.tensorrt', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, "TensorRT is not installed", HINT)


# --- the builder settings, against a stand-in tensorrt module -----------------------------------------------------


class _Enum:
    def __init__(self, *names):
        for name in names:
            setattr(self, name, name)


def fake_tensorrt(version="10.9.0", *, weak=True, half=False, qdq=False, parses=True, builds=True,
                  input_shape=(-1, 3, 64, 64)):
    """A tensorrt stand-in recording what build_engine asks of it (`trt.record`)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    record = trt.record = {"flags": set(), "profiles": [], "pools": {}}
    trt.DataType = _Enum("FLOAT", "HALF", "INT8", "INT32", "BOOL")
    trt.LayerType = _Enum("CONVOLUTION", "QUANTIZE", "DEQUANTIZE")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.BuilderFlag = _Enum("FP16", "INT8") if weak else _Enum("DIRECT_IO")
    trt.MemoryPoolType = _Enum("WORKSPACE")

    class Logger:
        WARNING = "WARNING"

        def __init__(self, level):
            self.level = level

    tensor_type = "HALF" if half else "FLOAT"

    class Layer:
        def __init__(self, kind):
            self.type, self.num_outputs = kind, 1

        def get_output(self, i):
            return types.SimpleNamespace(dtype=tensor_type)

    class Network:
        def __init__(self, flags):
            record["network_flags"] = flags
            self.layers, self.inputs = [], []

        num_layers = property(lambda self: len(self.layers))
        num_inputs = property(lambda self: len(self.inputs))

        def get_layer(self, i):
            return self.layers[i]

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0 if parses else 2

        def get_error(self, i):
            return f"In node 3 (Conv): unsupported thing {i}\nmore detail"

        def _fill(self):
            if parses:
                kinds = ["QUANTIZE", "CONVOLUTION", "DEQUANTIZE"] if qdq else ["CONVOLUTION"]
                self.network.layers = [Layer(k) for k in kinds]
                self.network.inputs = [types.SimpleNamespace(name="INPUT__0", shape=input_shape, dtype=tensor_type)]
            return parses

        def parse_from_file(self, path):
            record["parsed"] = path
            return self._fill()

        def parse(self, data):
            record["parsed_bytes"] = data
            return self._fill()

    class Profile:
        def set_shape(self, name, low, opt, high):
            record["profiles"].append((name, low, opt, high))

    class Config:
        def set_memory_pool_limit(self, pool, size):
            record["pools"][pool] = size

        def set_flag(self, flag):
            record["flags"].add(flag)

        def add_optimization_profile(self, profile):
            record["profile_added"] = True

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"PLAN:" + network.inputs[0].name.encode() if builds else None

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt


@pytest.fixture
def onnx_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"stand-in")
    return path


def use(monkeypatch, trt):
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt.record


def test_fp16_build_uses_upstreams_trtexec_settings(onnx_file, monkeypatch):
    from image_classification.export.tensorrt import build_engine

    record = use(monkeypatch, fake_tensorrt("10.9.0"))
    out = build_engine(onnx_file, onnx_file.with_suffix(".plan"))
    assert out.read_bytes() == b"PLAN:INPUT__0"
    assert record["parsed"] == str(onnx_file)
    assert record["network_flags"] == 0
    assert record["flags"] == {"FP16"}  # trtexec --fp16
    assert record["pools"] == {"WORKSPACE": 10 << 30}  # trtexec --workspace=10240
    assert record["profiles"] == [("INPUT__0", (1, 3, 64, 64), (64, 3, 64, 64), (64, 3, 64, 64))]
    assert record["profile_added"]
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == ["model.onnx", "model.plan"]


def test_int8_from_qdq_on_tensorrt_8(onnx_file, monkeypatch):
    from image_classification.export.tensorrt import build_engine

    record = use(monkeypatch, fake_tensorrt("8.6.1", qdq=True, input_shape=(-1, 3, -1, -1)))
    build_engine(onnx_file, onnx_file.with_suffix(".plan"), int8=True, min_batch=2, opt_batch=8, max_batch=16,
                 image_size=96, workspace_gib=2)
    assert record["network_flags"] == 1  # explicit batch, asked for on TensorRT 8
    assert record["flags"] == {"FP16", "INT8"}
    assert record["pools"] == {"WORKSPACE": 2 << 30}
    assert record["profiles"] == [("INPUT__0", (2, 3, 96, 96), (8, 3, 96, 96), (16, 3, 96, 96))]


def test_tensorrt_11_strongly_typed(onnx_file, monkeypatch):
    from image_classification.export.tensorrt import build_engine

    record = use(monkeypatch, fake_tensorrt("11.4.0", weak=False, half=True))
    build_engine(onnx_file, onnx_file.with_suffix(".plan"), max_batch=8)
    assert record["flags"] == set()  # no weak-typing flags: the fp16 graph carries the precision
    assert record["profiles"][0][3] == (8, 3, 64, 64)

    use(monkeypatch, fake_tensorrt("11.4.0", weak=False, half=False))
    monkeypatch.setitem(sys.modules, "modelopt", None)
    with pytest.raises(UserError, match=r"has no FP16 builder flag .* --precision fp16"):
        build_engine(onnx_file, onnx_file.with_name("fp32.plan"))
    assert not onnx_file.with_name("fp32.plan").exists()


@pytest.mark.parametrize("fake,kwargs,fragment", [
    ({"qdq": False}, {"int8": True}, "no QuantizeLinear/DequantizeLinear nodes"),
    ({"parses": False}, {}, "TensorRT cannot parse"),
    ({"builds": False}, {}, "could not build an engine"),
    ({}, {"min_batch": 4, "max_batch": 2}, "1 <= min <= opt <= max"),
    ({"input_shape": (-1, 3, -1, -1)}, {}, "pass the image size"),
])
def test_build_errors_are_one_line(onnx_file, monkeypatch, fake, kwargs, fragment):
    from image_classification.export.tensorrt import build_engine

    use(monkeypatch, fake_tensorrt(**fake))
    with pytest.raises(UserError, match=fragment) as info:
        build_engine(onnx_file, onnx_file.with_suffix(".plan"), **kwargs)
    assert "\n" not in str(info.value)
    assert not onnx_file.with_suffix(".plan").exists()


def test_cli_builds_with_a_default_engine_name(onnx_file, monkeypatch, capsys):
    from image_classification.export import tensorrt as T

    record = use(monkeypatch, fake_tensorrt())
    run_cli(T.main, ["--onnx", str(onnx_file), "--fp16", "false", "--max-batch", "32"])
    assert record["flags"] == set()
    assert onnx_file.with_suffix(".plan").read_bytes() == b"PLAN:INPUT__0"
    assert "(fp32, batch 1 to 32, tuned for 32)" in capsys.readouterr().out


def test_missing_onnx_file(onnx_file, monkeypatch):
    from image_classification.export.tensorrt import build_engine

    use(monkeypatch, fake_tensorrt())
    with pytest.raises(UserError, match="ONNX file not found"):
        build_engine(onnx_file.with_name("nope.onnx"), onnx_file.with_suffix(".plan"))


# --- a real engine ------------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_fp16_engine_matches_pytorch(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("onnx", reason="onnx is not installed")
    from image_classification.export.onnx import export_onnx
    from image_classification.export.tensorrt import TensorRTRunner, build_engine
    from image_classification.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet-b0", num_classes=10).eval().cuda()
    with torch.no_grad():
        model.get_classifier().weight.mul_(30)
    # An fp16 graph: TensorRT 11 takes its precision from the graph, TensorRT 10 also sets the FP16 flag.
    onnx_path = export_onnx(model, tmp_path / "b0.onnx", image_size=64, device="cuda", precision="fp16")
    plan = build_engine(onnx_path, tmp_path / "b0.plan", fp16=True, max_batch=8, opt_batch=4, workspace_gib=1)
    runner = TensorRTRunner(plan)
    for batch in (1, 4):
        images = torch.randn(batch, 3, 64, 64, device="cuda")
        with torch.no_grad():
            expected = model(images)
        got = runner(images).float()
        torch.cuda.synchronize()
        assert got.shape == expected.shape
        scale = float(expected.abs().max())
        assert float((got - expected).abs().max()) <= 2e-2 * max(1.0, scale)
    with pytest.raises(UserError, match="does not fit"):
        runner(torch.randn(9, 3, 64, 64, device="cuda"))
