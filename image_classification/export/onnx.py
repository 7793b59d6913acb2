"""Export a classifier to ONNX in the layout Triton serves, and check the file against PyTorch with onnxruntime.

The layout is the one of upstream's Triton kits: input `INPUT__0` (N, 3, H, W), output `OUTPUT__0` (N, classes),
a symbolic batch dimension, constant folding, opset 17 or later. Unlike upstream's model2onnx.py it names its
tensors, keeps the batch dynamic, does not pass the `enable_onnx_checker` argument that torch 1.11 removed (it runs
`onnx.checker` itself), writes the file atomically, records the preprocessing in the file's metadata, and
checks the exported graph against PyTorch before the file appears.

    python efficientnet/model2onnx.py --arch efficientnet-b0 --pretrained-from-file model.pth.tar
    python gpunet/model2onnx.py --arch gpunet-0 --pretrained-from-file 0.65ms.pth.tar --precision fp16 --device cuda

An INT8-quantized checkpoint (quant_main.py's, see image_classification.quantization) is exported with its
quantizers as QuantizeLinear/DequantizeLinear pairs, TensorRT's explicit quantization: the Q/DQ counts are checked
and printed, the onnxruntime check compares against the fake-quantized PyTorch model, and an INT8 TensorRT engine
is built beside the file where TensorRT and a GPU are present (--int8-engine).

API: `export_onnx(model, path, image_size=...)` and `verify_onnx(path, model, image_size=...)`.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn

from common.atomic_files import atomic_write
from common.cli_errors import UserError, run_cli
from image_classification.export.errors import VerificationError  # noqa: F401  (raised here, caught by callers)

# The command line and the names and defaults it shows live in onnx_flags.py, which imports no torch.
from .onnx_flags import (  # noqa: F401 (ExportDialect and build_parser: the CLI's API, as before)
    DEFAULT_DIALECT,
    DEFAULT_OPSET,
    FP16_RTOL,
    FP32_ATOL,
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    ExportDialect,
    build_parser,
)

BATCH_DIM = "batch"
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
_VERIFY_SEED = 0


def _max_opset() -> int:
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise UserError("the onnx package is not installed: pip install onnx onnxruntime "
                        "(the project's [onnx] extra)") from None
    return onnx


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


# --- export -------------------------------------------------------------------------------------------------------


def _resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but PyTorch sees no CUDA device: export on the CPU (--device cpu)")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu or cuda, got {device}")
    return device


def _resolve_precision(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def prepare_model(model: nn.Module, *, device: str | torch.device = "cpu", precision: str = "fp32") -> nn.Module:
    """`model` on `device` in `precision`: the model itself when it is already there, else a copy (the caller's
    model is never moved or cast behind its back)."""
    device, dtype = _resolve_device(device), _resolve_precision(precision)
    tensors = list(model.parameters()) + list(model.buffers())
    floating = [t for t in tensors if t.is_floating_point()]
    if all(t.device.type == device.type for t in tensors) and all(t.dtype == dtype for t in floating):
        return model
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in list(model.parameters()) + list(model.buffers()):
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _metadata_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


def default_metadata(model: nn.Module, image_size: int, precision: str = "fp32") -> dict:
    """What a server needs to feed the file: architecture, input size, preprocessing, tensor names."""
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    meta = {}
    if "architecture" in cfg:
        meta["arch"] = cfg["architecture"]
    meta["input_size"] = [3, image_size, image_size]
    for key in ("mean", "std", "crop_pct", "interpolation", "num_classes"):
        if key in cfg:
            meta[key] = cfg[key]
    meta.update(input_name=INPUT_NAME, output_name=OUTPUT_NAME, layout="NCHW", precision=precision,
                output="logits")
    return meta


def _check_opset(opset: int) -> int:
    top = _max_opset()
    if not MIN_OPSET <= opset <= top:
        raise UserError(f"opset must be between {MIN_OPSET} and {top} (the TorchScript exporter's newest), "
                        f"got {opset}")
    return opset


def export_onnx_bytes(
    model: nn.Module,
    *,
    image_size: int,
    opset: int = DEFAULT_OPSET,
    batch_size: int = 1,
    dynamic_batch: bool = True,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    metadata: dict | None = None,
) -> bytes:
    """The checked ONNX model as bytes (see `export_onnx`)."""
    onnx = _import_onnx()
    _check_opset(opset)
    if image_size < 1:
        raise UserError(f"image size must be positive, got {image_size}")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    model = prepare_model(model, device=device, precision=precision)
    dev, dtype = _model_device_dtype(model)
    sample = torch.randn(batch_size, 3, image_size, image_size,
                         generator=torch.Generator().manual_seed(_VERIFY_SEED)).to(dev, dtype)
    arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    buffer = io.BytesIO()
    with _eval_mode(model), torch.no_grad():
        try:
            model(sample)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{arch} cannot run on {image_size} px inputs: {first}") from None
        dynamic_axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic_batch else None
        with warnings.catch_warnings():
            # The TorchScript ("legacy") exporter is chosen on purpose, so its deprecation notice is noise here.
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message=r"The feature will be removed")
            # modelopt's quantizers branch on their (constant) ranges while tracing; the trace is right regardless.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"modelopt\.")
            # dynamo=False: the TorchScript exporter. modelopt's Q/DQ path (fake-quant modules exported as
            # QuantizeLinear/DequantizeLinear) needs it, and it exports these convolutional nets cleanly and fast.
            torch.onnx.export(
                model, (sample,), buffer, dynamo=False, export_params=True, opset_version=opset,
                do_constant_folding=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
            )
    proto = onnx.load_from_string(buffer.getvalue())
    meta = default_metadata(model, image_size, precision) | dict(metadata or {})
    del proto.metadata_props[:]
    for key, value in meta.items():
        if value is None:
            continue
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), _metadata_text(value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def write_bytes_atomically(data: bytes, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_write(path) as f:
        f.write(data)
    return path


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    image_size: int,
    opset: int = DEFAULT_OPSET,
    batch_size: int = 1,
    dynamic_batch: bool = True,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    metadata: dict | None = None,
) -> Path:
    """Export `model` to `path` (written atomically) and return the path.

    The graph is traced with a (batch_size, 3, image_size, image_size) input on `device` in `precision`
    (fp16 means a pure-half graph with half inputs and outputs); with `dynamic_batch` the batch dimension is
    symbolic. `metadata` adds to (or replaces) the metadata_props derived from the model's `pretrained_cfg`.
    """
    data = export_onnx_bytes(model, image_size=image_size, opset=opset, batch_size=batch_size,
                             dynamic_batch=dynamic_batch, device=device, precision=precision, metadata=metadata)
    return write_bytes_atomically(data, path)


# --- verification -------------------------------------------------------------------------------------------------

_ORT_TYPES = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16, "tensor(double)": torch.float64}


def default_tolerance(precision: str | torch.dtype, reference_scale: float = 1.0) -> float:
    """1e-3 for fp32; for fp16 1% of the largest reference output (at least 1e-2)."""
    if precision in ("fp16", torch.float16):
        return FP16_RTOL * max(1.0, reference_scale)
    return FP32_ATOL


def verify_onnx(
    path: str | os.PathLike | bytes,
    model: nn.Module,
    *,
    image_size: int,
    batch_sizes: Sequence[int] = (1, 2),
    atol: float | None = None,
    quantized: bool = False,
) -> float:
    """Run random inputs of each batch size through onnxruntime (CPU provider) and through `model` (on its own
    device, in its own precision); return the largest absolute difference, or raise VerificationError when it
    exceeds `atol` (default: `default_tolerance` of the model's precision). A `quantized` model (Q/DQ graph against
    fake quantization) gets more inputs, judged as a group instead: INT8 rounding ties move some inputs' outputs
    by a few steps, an export error moves all of them (see export.qdq; `atol` does not apply)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("onnxruntime is not installed: pip install onnxruntime to check an export") from None
    source = path if isinstance(path, bytes) else str(path)
    if not isinstance(path, bytes) and not Path(path).is_file():
        raise UserError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's warnings about unused initializers are noise
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, NotImplemented...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"onnxruntime cannot load the exported model: {first}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise UserError(f"expected one model input, the ONNX file has {len(inputs)}")
    onnx_dtype = _ORT_TYPES.get(inputs[0].type, torch.float32)
    if quantized:
        # Compared on the CPU in exact FP32: on a GPU, TF32 convolutions (and the fake-quantization kernels' own
        # rounding) move enough values across INT8 rounding ties to make every input differ a little.
        model = prepare_model(model, device="cpu", precision="fp32")
    dev, dtype = _model_device_dtype(model)
    generator = torch.Generator().manual_seed(_VERIFY_SEED + 1)
    worst, scale = 0.0, 0.0
    per_sample: list[float] = []
    same_top1: list[bool] = []
    batches = list(dict.fromkeys(int(b) for b in batch_sizes))  # unique, in order
    if quantized:
        from image_classification.export.qdq import QDQ_EXTRA_SAMPLES

        batches.append(QDQ_EXTRA_SAMPLES)
    with _eval_mode(model), torch.no_grad():
        for batch in batches:
            images = torch.randn(batch, 3, image_size, image_size, generator=generator)
            reference = model(images.to(dev, dtype)).float().cpu()
            (onnx_out,) = session.run([session.get_outputs()[0].name],
                                      {inputs[0].name: images.to(onnx_dtype).numpy()})
            onnx_out = torch.from_numpy(onnx_out).float()
            if onnx_out.shape != reference.shape:
                raise VerificationError(f"ONNX output shape {tuple(onnx_out.shape)} differs from PyTorch's "
                                        f"{tuple(reference.shape)} at batch {batch}", float("inf"))
            differences = (onnx_out - reference).abs().flatten(1).max(dim=1).values
            per_sample += differences.tolist()
            same_top1 += (onnx_out.argmax(dim=1) == reference.argmax(dim=1)).tolist()
            worst = max(worst, float(differences.max()))
            scale = max(scale, float(reference.abs().max()))
    if atol is None:
        atol = default_tolerance(dtype, scale)
    if quantized:
        from image_classification.export.qdq import check_qdq_agreement

        check_qdq_agreement(per_sample, same_top1, scale)
        return worst
    if not worst <= atol:  # NaN fails too
        raise VerificationError(f"the ONNX model's outputs differ from PyTorch's: max abs difference {worst:.3g} "
                                f"is above the tolerance {atol:.3g}", worst)
    return worst


# --- command line -------------------------------------------------------------------------------------------------


def default_output_path(checkpoint: str | os.PathLike | None, arch: str) -> Path:
    """`x.pth.tar` -> `x.onnx` beside the checkpoint; without one, `<arch>.onnx` in the current directory."""
    if checkpoint is None:
        return Path(f"{arch}.onnx")
    checkpoint = Path(checkpoint)
    name = checkpoint.name
    for suffixes in ((".tar",), (".pth", ".pt", ".ckpt", ".bin")):
        for suffix in suffixes:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return checkpoint.with_name(name + ".onnx")


def _fold_batchnorm_fn() -> Callable[[nn.Module], nn.Module | None]:
    try:
        from image_classification.inference.fast import fold_batchnorm
    except ImportError:
        raise UserError("--fold-bn needs image_classification.inference.fast.fold_batchnorm, which this checkout "
                        "lacks: export without it (the exporter folds BatchNorm in eval mode anyway)") from None
    return fold_batchnorm


def run(args: argparse.Namespace, dialect: ExportDialect = DEFAULT_DIALECT) -> Path:
    from image_classification.models import get_model_info
    from image_classification.quantization.state import is_quantized_model, restore_quantizers

    from .sources import check_output, load_model

    if args.batch_size < 1:
        raise UserError(f"-b/--batch-size must be at least 1, got {args.batch_size}")
    if args.image_size is not None and args.image_size < 1:
        raise UserError(f"--image-size must be positive, got {args.image_size}")
    _check_opset(args.opset)
    _resolve_device(args.device)
    fold = _fold_batchnorm_fn() if args.fold_bn else None  # fails before the slow part when it is missing

    def check_family(info) -> None:
        if dialect.family is not None and info.family != dialect.family:
            raise UserError(f"{dialect.family}/{dialect.prog} exports {dialect.family} models, and {info.name} is "
                            f"not one (use {info.family}/model2onnx.py)")

    name = args.arch
    if name is None and args.pretrained_from_file is None:
        name = dialect.default_arch
    if name is None and args.pretrained_from_file is None:
        raise UserError("no model given: pass --arch NAME (python -m image_classification.models lists them)")
    if name is not None:
        check_family(get_model_info(name))
    # The checkpoint's model flags (BN epsilon, the conv SE, a GPUNet JSON) shape the graph; the command line wins.
    model_kwargs = {k: getattr(args, k) for k in dialect.model_kwargs if getattr(args, k, None) is not None}
    loaded = load_model(args.pretrained_from_file, name, weights_flag="--pretrained-from-file",
                        pretrained=args.pretrained,
                        weights="ema" if args.ema else ("auto" if args.pretrained else "raw"),
                        num_classes=args.num_classes, model_kwargs=model_kwargs, default_arch=dialect.default_arch,
                        ema_flag="--ema", restore_quantizers=restore_quantizers)
    info = loaded.info
    check_family(info)
    model = loaded.model.eval()
    quantized = is_quantized_model(model)
    if args.quantized and not quantized:
        raise UserError(f"--quantized asks for an INT8 model, and {args.pretrained_from_file or 'no checkpoint'} "
                        f"holds no quantizer state: quantize the FP32 weights with quant_main.py first")
    if info.quantized and not quantized:
        print(f"warning: {info.name} weights without INT8 quantizer state: exporting the FP32 graph (quant_main.py "
              f"writes the quantized checkpoint)", file=sys.stderr, flush=True)
    if quantized and args.precision != "fp32":
        raise UserError("an INT8-quantized model exports in fp32 (the Q/DQ graph; TensorRT picks INT8 and FP16 "
                        "kernels from it): drop --precision fp16")
    if quantized and fold is not None:
        raise UserError("--fold-bn would change the weights the INT8 ranges were calibrated on: export a quantized "
                        "model without it (TensorRT folds BatchNorm itself)")

    image_size = args.image_size or loaded.preprocessing.image_size
    if fold is not None:
        folded = fold(model)
        model = folded if isinstance(folded, nn.Module) else model  # in place or returned: both are fine
    model = prepare_model(model, device=args.device, precision=args.precision)

    prep = loaded.preprocessing
    metadata = {"mean": list(prep.mean), "std": list(prep.std), "crop_pct": prep.crop_pct,
                "interpolation": prep.interpolation}
    num_classes = loaded.num_classes
    if loaded.class_names is not None:
        metadata["class_names"] = loaded.class_names
    if loaded.checkpoint is not None:
        metadata["source_checkpoint"] = Path(loaded.checkpoint).name
        metadata["weights"] = loaded.weights_used
    else:
        metadata["weights"] = "random"

    # Named after the user's checkpoint, never beside the published weights in the torch hub cache.
    output = check_output(args.output or default_output_path(args.pretrained_from_file, info.name), flag="--output",
                          source=loaded.checkpoint)
    if quantized:
        metadata["quantization"] = "int8-qdq"
    data = export_onnx_bytes(model, image_size=image_size, opset=args.opset, batch_size=args.batch_size,
                             dynamic_batch=args.dynamic_batch, device=args.device, precision=args.precision,
                             metadata=metadata)
    if quantized:
        from image_classification.export.qdq import check_qdq

        counts = check_qdq(data, f"the ONNX export of {info.name}")
        print(f"Q/DQ nodes: {counts['QuantizeLinear']} QuantizeLinear, {counts['DequantizeLinear']} "
              f"DequantizeLinear", flush=True)
    if args.verify:
        if onnxruntime_available():
            batches = (1, args.batch_size) if args.dynamic_batch else (args.batch_size,)
            try:
                diff = verify_onnx(data, model, image_size=image_size, batch_sizes=batches, atol=args.atol,
                                   quantized=quantized)
            except VerificationError as exc:
                raise UserError(f"{exc}; {output} was not written (--no-verify writes it unchecked)") from None
            if quantized:
                from image_classification.export.qdq import QDQ_EXTRA_SAMPLES

                batches = (*batches, QDQ_EXTRA_SAMPLES)
            shown = " and ".join(str(b) for b in dict.fromkeys(batches))
            against = "the fake-quantized PyTorch model" if quantized else "PyTorch"
            ties = ("; most inputs match to float precision, INT8 rounding ties move the others by a few steps"
                    if quantized else "")
            print(f"max abs difference vs {against}: {diff:.3g} (onnxruntime CPU, batch {shown}){ties}", flush=True)
        else:
            print("onnxruntime is not installed: skipping the check against PyTorch (pip install onnxruntime)",
                  file=sys.stderr, flush=True)
    write_bytes_atomically(data, output)
    batch = "dynamic batch" if args.dynamic_batch else f"batch {args.batch_size}"
    kind = "INT8 Q/DQ" if quantized else args.precision
    print(f"=> exported {info.name} ({num_classes} classes, {image_size} px, {kind}, opset {args.opset}, "
          f"{batch}) to {output}", flush=True)
    if quantized:
        from image_classification.export.qdq import build_int8_engine

        engine = build_int8_engine(output, args.int8_engine,
                                   log=lambda line: print(line, file=sys.stderr, flush=True))
        if engine is not None:
            print(f"=> INT8 TensorRT engine: {engine}", flush=True)
    return output


def main(argv=None, dialect: ExportDialect = DEFAULT_DIALECT) -> None:
    run(build_parser(dialect).parse_args(argv), dialect)


if __name__ == "__main__":
    run_cli(main)
