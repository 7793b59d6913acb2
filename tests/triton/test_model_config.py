"""config.pbtxt for each backend: written, read back (with Triton's own schema where tritonclient is installed) and
every field that matters checked; bad combinations refused with one line."""
from __future__ import annotations

import json

import pytest

from common.cli_errors import UserError
from image_classification.serving import model_config as mc
from tests.triton.pbtxt import parse, parse_text, schema_available


def render(**kwargs) -> dict:
    spec = mc.ServingSpec(**({"name": "efficientnet-b0", "format": "onnx", "image_size": 224, "num_classes": 1000}
                             | kwargs))
    return parse(mc.to_pbtxt(mc.model_config(spec)))


def test_onnx_config_has_io_batching_instances_and_tensorrt_accelerator():
    config = render(max_batch_size=64, instances=2, preferred_batch_sizes=(64, 32, 32), max_queue_delay_us=250,
                    precision="fp16", parameters={"preprocessing": '{"image_size": 224}'})
    assert config["name"] == ["efficientnet-b0"]
    assert config["platform"] == ["onnxruntime_onnx"] and config["backend"] == ["onnxruntime"]
    assert config["max_batch_size"] == [64]
    (inp,) = config["input"]
    assert inp == {"name": ["INPUT__0"], "data_type": ["TYPE_FP32"], "format": ["FORMAT_NCHW"], "dims": [3, 224, 224]}
    (out,) = config["output"]
    assert out == {"name": ["OUTPUT__0"], "data_type": ["TYPE_FP32"], "dims": [1000], "label_filename": ["labels.txt"]}
    assert config["dynamic_batching"] == [{"preferred_batch_size": [32, 64], "max_queue_delay_microseconds": [250]}]
    assert config["instance_group"] == [{"count": [2], "kind": ["KIND_GPU"]}]
    (accelerator,) = config["optimization"][0]["execution_accelerators"][0]["gpu_execution_accelerator"]
    assert accelerator["name"] == ["tensorrt"]
    assert accelerator["parameters"]["precision_mode"] == "FP16"
    assert int(accelerator["parameters"]["max_workspace_size_bytes"]) > 0
    assert json.loads(config["parameters"]["preprocessing"]["string_value"][0]) == {"image_size": 224}


def test_onnx_on_cpu_instances_has_no_gpu_accelerator():
    config = render(kind="cpu", precision="fp32")
    assert config["instance_group"] == [{"count": [1], "kind": ["KIND_CPU"]}]
    assert "optimization" not in config


def test_onnx_without_accelerator_can_take_half_inputs():
    config = render(accelerator="none", io_precision="fp16")
    assert "optimization" not in config
    assert config["input"][0]["data_type"] == ["TYPE_FP16"] and config["output"][0]["data_type"] == ["TYPE_FP16"]


def test_tensorrt_config_with_cuda_graphs():
    config = render(format="tensorrt", cuda_graph=True, max_batch_size=8, num_classes=10, image_size=32)
    assert config["platform"] == ["tensorrt_plan"] and config["backend"] == ["tensorrt"]
    assert config["optimization"] == [{"cuda": [{"graphs": [True]}]}]
    assert config["input"][0]["dims"] == [3, 32, 32] and config["output"][0]["dims"] == [10]
    assert config["dynamic_batching"] == [{"max_queue_delay_microseconds": [100]}]


def test_python_config_names_the_backend_and_its_parameters():
    config = render(format="python", kind="cpu", precision="fp32",
                    parameters={"checkpoint": "model.pth.tar", "precision": "fp32", "compile": "false"})
    assert "platform" not in config and config["backend"] == ["python"]
    assert {k: v["string_value"][0] for k, v in config["parameters"].items()} == {
        "checkpoint": "model.pth.tar", "precision": "fp32", "compile": "false"}


def test_zero_queue_delay_and_no_labels_are_left_out():
    config = render(max_queue_delay_us=0, labels=False)
    assert config["dynamic_batching"] == [{}]  # an empty block still turns the dynamic batcher on
    assert "label_filename" not in config["output"][0]


def test_strings_survive_quoting():
    text = 'quote " backslash \\ newline \n non-ascii é ✓'
    config = render(parameters={"odd": text})
    assert config["parameters"]["odd"]["string_value"] == [text]


@pytest.mark.skipif(not schema_available(), reason="tritonclient (Triton's ModelConfig schema) is not installed")
def test_every_format_passes_tritons_schema():
    from tests.triton.pbtxt import parse_with_schema

    for fmt, kind in (("onnx", "gpu"), ("onnx", "cpu"), ("tensorrt", "gpu"), ("python", "gpu"), ("python", "cpu")):
        spec = mc.ServingSpec(name="m", format=fmt, image_size=64, num_classes=10, kind=kind,
                              precision="fp16" if kind == "gpu" else "fp32", preferred_batch_sizes=(8,),
                              parameters={"preprocessing": "{}"})
        text = mc.to_pbtxt(mc.model_config(spec))
        assert parse_with_schema(text) == parse_text(text)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"name": "bad name"}, "not valid for Triton"),
    ({"format": "torchscript"}, "format must be one of"),
    ({"kind": "tpu"}, "instance kind"),
    ({"max_batch_size": 0}, "--max-batch-size"),
    ({"instances": 0}, "--instances"),
    ({"preferred_batch_sizes": (128,), "max_batch_size": 64}, "--preferred-batch-sizes"),
    ({"max_queue_delay_us": -1}, "--max-queue-delay-us"),
    ({"format": "tensorrt", "kind": "cpu"}, "GPU only"),
    ({"cuda_graph": True}, "--capture-cuda-graph"),
    ({"precision": "int8"}, "precision must be"),
])
def test_bad_specs_are_refused(kwargs, fragment):
    with pytest.raises(UserError, match=fragment.replace("-", r"\-")):
        mc.ServingSpec(**({"name": "m", "format": "onnx", "image_size": 32, "num_classes": 10} | kwargs))
