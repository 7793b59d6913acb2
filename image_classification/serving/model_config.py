"""Triton model configurations (config.pbtxt) for a classifier served by ONNX Runtime, TensorRT or Python.

The configuration is built as plain data (`model_config`) and written in protobuf text format (`to_pbtxt`), so that
writing a repository needs neither protobuf's Triton schema nor tritonclient; the tests parse the text back with
tritonclient's `model_config_pb2` where it is installed. Field names follow Triton's model_config.proto:

    name, platform/backend, max_batch_size, input [...], output [... label_filename], dynamic_batching
    { preferred_batch_size max_queue_delay_microseconds }, instance_group [{ count kind }], optimization
    { execution_accelerators { gpu_execution_accelerator [{ name: "tensorrt" parameters {...} }] } cuda { graphs } },
    parameters { key value { string_value } }
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from common.cli_errors import UserError

INPUT_NAME = "INPUT__0"  # the names of our ONNX exports (and of upstream's Triton kits)
OUTPUT_NAME = "OUTPUT__0"
LABELS_FILE = "labels.txt"
PREPROCESSING_PARAMETER = "preprocessing"  # JSON: what a client must do to an image before sending it

FORMATS = ("onnx", "tensorrt", "python")
# Triton names each backend twice: the backend, and for the two model-file backends a platform string.
BACKENDS = {"onnx": "onnxruntime", "tensorrt": "tensorrt", "python": "python"}
PLATFORMS = {"onnx": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
MODEL_FILES = {"onnx": "model.onnx", "tensorrt": "model.plan", "python": "model.py"}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
DATA_TYPES = {"fp32": "TYPE_FP32", "fp16": "TYPE_FP16"}
ACCELERATORS = ("tensorrt", "none")
DEFAULT_TRT_WORKSPACE_BYTES = 1 << 30  # the value of Triton's documentation example for ORT's TensorRT provider
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class Enum(str):
    """A protobuf enum value: written bare (KIND_GPU), where a plain str is written quoted."""


@dataclass(frozen=True)
class ServingSpec:
    """What a Triton model configuration of one classifier says.

    `io_precision` is the data type of the input and output tensors (fp16 only for a half ONNX graph);
    `precision` is the compute precision asked of TensorRT (the accelerator of ONNX Runtime, or the engine).
    """

    name: str
    format: str
    image_size: int
    num_classes: int
    max_batch_size: int = 64
    instances: int = 1
    kind: str = "gpu"
    precision: str = "fp16"
    io_precision: str = "fp32"
    accelerator: str = "tensorrt"
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 100
    cuda_graph: bool = False
    labels: bool = True
    parameters: dict[str, str] = field(default_factory=dict)
    trt_workspace_bytes: int = DEFAULT_TRT_WORKSPACE_BYTES

    def __post_init__(self):
        check_spec(self)


def check_model_name(name: str) -> str:
    if not _MODEL_NAME.match(name or ""):
        raise UserError(f"model name {name!r} is not valid for Triton: use letters, digits, '.', '_' and '-'")
    return name


def check_batching(max_batch_size: int, preferred: tuple[int, ...] | list[int], max_queue_delay_us: int,
                   instances: int) -> None:
    """The batching flags shared by deploy.py and serve.py, checked with the flags' names in the messages."""
    if max_batch_size < 1:
        raise UserError(f"--max-batch-size must be at least 1, got {max_batch_size}")
    if instances < 1:
        raise UserError(f"--instances must be at least 1, got {instances}")
    if max_queue_delay_us < 0:
        raise UserError(f"--max-queue-delay-us must not be negative, got {max_queue_delay_us}")
    bad = [b for b in preferred if not 1 <= b <= max_batch_size]
    if bad:
        raise UserError(f"--preferred-batch-sizes must lie in 1..{max_batch_size} (--max-batch-size), got "
                        f"{', '.join(map(str, bad))}")


def check_spec(spec: ServingSpec) -> None:
    check_model_name(spec.name)
    if spec.format not in FORMATS:
        raise UserError(f"format must be one of {', '.join(FORMATS)}, got {spec.format!r}")
    if spec.kind not in KINDS:
        raise UserError(f"instance kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
    for what, value in (("precision", spec.precision), ("input/output precision", spec.io_precision)):
        if value not in DATA_TYPES:
            raise UserError(f"{what} must be one of {', '.join(DATA_TYPES)}, got {value!r}")
    if spec.accelerator not in ACCELERATORS:
        raise UserError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {spec.accelerator!r}")
    check_batching(spec.max_batch_size, spec.preferred_batch_sizes, spec.max_queue_delay_us, spec.instances)
    if spec.image_size < 1 or spec.num_classes < 1:
        raise UserError(f"image size and class count must be positive, got {spec.image_size} and {spec.num_classes}")
    if spec.format == "tensorrt" and spec.kind != "gpu":
        raise UserError("a TensorRT plan runs on a GPU only: use --device gpu (or --format onnx for CPU instances)")
    if spec.cuda_graph and spec.format != "tensorrt":
        raise UserError("--capture-cuda-graph is an option of Triton's TensorRT backend (--format tensorrt); "
                        "the python format captures a CUDA graph on GPUs anyway, ONNX Runtime does not")


def model_config(spec: ServingSpec) -> dict:
    """The configuration as nested dicts and lists, in the order it is written."""
    config: dict = {"name": spec.name}
    if spec.format in PLATFORMS:
        config["platform"] = PLATFORMS[spec.format]
    config["backend"] = BACKENDS[spec.format]
    config["max_batch_size"] = spec.max_batch_size
    config["input"] = [{"name": INPUT_NAME, "data_type": Enum(DATA_TYPES[spec.io_precision]),
                        "format": Enum("FORMAT_NCHW"), "dims": [3, spec.image_size, spec.image_size]}]
    output = {"name": OUTPUT_NAME, "data_type": Enum(DATA_TYPES[spec.io_precision]), "dims": [spec.num_classes]}
    if spec.labels:
        output["label_filename"] = LABELS_FILE
    config["output"] = [output]
    batching: dict = {}
    if spec.preferred_batch_sizes:
        batching["preferred_batch_size"] = sorted(set(spec.preferred_batch_sizes))
    batching["max_queue_delay_microseconds"] = spec.max_queue_delay_us
    config["dynamic_batching"] = batching
    config["instance_group"] = [{"count": spec.instances, "kind": Enum(KINDS[spec.kind])}]
    optimization: dict = {}
    if spec.format == "onnx" and spec.accelerator == "tensorrt" and spec.kind == "gpu":
        parameters = {"precision_mode": spec.precision.upper(),
                      "max_workspace_size_bytes": str(spec.trt_workspace_bytes)}
        optimization["execution_accelerators"] = {"gpu_execution_accelerator": [
            {"name": "tensorrt", "parameters": parameters}]}
    if spec.cuda_graph:
        optimization["cuda"] = {"graphs": True}
    if optimization:
        config["optimization"] = optimization
    if spec.parameters:
        config["parameters"] = {k: {"string_value": str(v)} for k, v in spec.parameters.items()}
    return config


# --- protobuf text format -----------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    """A text-format string literal: C escapes, non-ASCII as octal UTF-8 bytes (what every parser reads)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    raise TypeError(f"cannot write {type(value).__name__} in a model configuration")


# Map fields (string keys): written as repeated {key, value} entries, as text format spells a map.
_MAP_FIELDS = {"parameters"}


def _lines(message: dict, indent: int) -> list[str]:
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        # proto3 leaves default scalars out (text_format prints none of them): so do we.
        if value is None or (not isinstance(value, (dict, list, Enum)) and value in (0, False, "")):
            continue
        if key in _MAP_FIELDS and isinstance(value, dict):
            for k, v in value.items():
                entry = {"key": k, "value": v}
                lines += [f"{pad}{key} {{", *_lines(entry, indent + 1), f"{pad}}}"]
        elif isinstance(value, dict):
            lines += [f"{pad}{key} {{", *_lines(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list):
            if all(not isinstance(v, dict) for v in value):
                lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
            else:
                for item in value:
                    lines += [f"{pad}{key} {{", *_lines(item, indent + 1), f"{pad}}}"]
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def to_pbtxt(config: dict) -> str:
    """`config` (as `model_config` builds it) in protobuf text format, ready for config.pbtxt."""
    return "\n".join(_lines(config, 0)) + "\n"


def preprocessing_parameter(preprocessing: dict) -> str:
    """The JSON a client reads from the model configuration to prepare images the way the model was trained."""
    keys = ("image_size", "resize_size", "crop_pct", "interpolation", "mean", "std")
    return json.dumps({k: preprocessing[k] for k in keys if k in preprocessing}, sort_keys=True)
