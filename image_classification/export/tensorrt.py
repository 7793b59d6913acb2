"""Build a TensorRT engine from an exported ONNX file, load it, and run it on CUDA tensors.

    python -m image_classification.export.tensorrt --onnx model.onnx --engine model.plan [--fp16] [--int8]
        [--max-batch 64]

The builder settings are those upstream passed to trtexec (`--fp16 --workspace=10240`): FP16 kernels allowed and
a 10 GiB workspace pool, plus an optimization profile for the dynamic batch of our exports. INT8 is explicit
quantization only: the ONNX must carry QuantizeLinear/DequantizeLinear nodes (a modelopt Q/DQ export); there is no
calibrator. TensorRT 11 removed the FP16 and INT8 builder flags (every network is strongly typed): there the
precision comes from the graph, so FP16 needs an fp16 export (model2onnx.py --precision fp16), or modelopt's
AutoCast when it is installed.

`tensorrt` is imported only when needed; where it is missing, every entry point says so in one line.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from common.atomic_files import atomic_write
from common.cli_errors import ArgumentParser, UserError, run_cli

INSTALL_HINT = "pip install tensorrt from NVIDIA's index, or use an NGC container"
DEFAULT_MAX_BATCH = 64  # upstream's Triton deployments: max batch 64
DEFAULT_WORKSPACE_GIB = 10  # trtexec --workspace=10240 (MiB)
_RUNTIMES: list = []  # deserializing runtimes must outlive their engines on older TensorRT versions


def import_tensorrt():
    """The tensorrt module, or a UserError that says how to get it."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: the package is there but its shared libraries are not
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"TensorRT is not installed: import tensorrt failed, {reason} ({INSTALL_HINT})") from None
    if not hasattr(trt, "Builder"):  # PyPI's placeholder, or a half-installed package
        raise UserError(f"TensorRT is not installed: the tensorrt module found has no Builder ({INSTALL_HINT})")
    return trt


def _major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 10


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def _layers(network):
    for i in range(network.num_layers):
        yield network.get_layer(i)


def _has_layer_type(trt, network, *names: str) -> bool:
    wanted = {getattr(trt.LayerType, n) for n in names if hasattr(trt.LayerType, n)}
    return any(layer.type in wanted for layer in _layers(network))


def _has_half_tensors(trt, network) -> bool:
    for layer in _layers(network):
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype == trt.DataType.HALF:
                return True
    return any(network.get_input(i).dtype == trt.DataType.HALF for i in range(network.num_inputs))


def _parse(trt, builder, logger, onnx_path: Path, data: bytes | None = None):
    flags = 0
    if _major(trt) < 10:  # TensorRT 8.x: explicit batch must be asked for (it is the only mode since 10)
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(data) if data is not None else parser.parse_from_file(str(onnx_path))
    if not ok:
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        errors = [(e.desc() if hasattr(e, "desc") else str(e)).strip() for e in errors]
        first = errors[0].splitlines()[0] if errors else "no details"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"TensorRT cannot parse {onnx_path}: {first}{more}")
    # The parser keeps references into the network; return it so that it lives as long as the network.
    return network, parser


def _autocast_fp16(trt, onnx_path: Path) -> bytes:
    """TensorRT 11+: an fp32 graph builds fp32 kernels only; convert it to mixed fp16 with modelopt's AutoCast."""
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError:
        raise UserError(
            f"TensorRT {trt.__version__} has no FP16 builder flag (networks are strongly typed) and {onnx_path} is "
            f"an fp32 graph: export it in fp16 (model2onnx.py --precision fp16), install nvidia-modelopt for its "
            f"AutoCast, or build an fp32 engine (--fp16 false)"
        ) from None
    model = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True)
    return model.SerializeToString()


def _profile_shape(shape: tuple[int, ...], batch: int, image_size: int | None, name: str) -> tuple[int, ...]:
    out = []
    for axis, dim in enumerate(shape):
        if dim >= 0:
            out.append(dim)
        elif axis == 0:
            out.append(batch)
        elif axis == 1:
            out.append(3)
        elif image_size is None:
            raise UserError(f"input {name} has a dynamic size {tuple(shape)}: pass the image size")
        else:
            out.append(image_size)
    return tuple(out)


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    fp16: bool = True,
    int8: bool = False,
    min_batch: int = 1,
    opt_batch: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    image_size: int | None = None,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
) -> Path:
    """Build a serialized TensorRT plan from `onnx_path` and write it atomically to `engine_path`.

    The dynamic batch gets one optimization profile min_batch <= opt_batch <= max_batch (opt defaults to max,
    the batch a throughput server fills); `image_size` is needed only when the ONNX spatial size is dynamic too.
    `fp16` allows FP16 kernels (trtexec --fp16); `int8` builds an explicitly quantized (Q/DQ) graph.
    """
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    opt_batch = max_batch if opt_batch is None else opt_batch
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise UserError(f"batch sizes must satisfy 1 <= min <= opt <= max, got {min_batch}, {opt_batch}, {max_batch}")
    if workspace_gib <= 0:
        raise UserError(f"the workspace must be positive, got {workspace_gib} GiB")
    if not onnx_path.is_file():
        raise UserError(f"ONNX file not found: {onnx_path}")
    if not torch.cuda.is_available():
        raise UserError("building a TensorRT engine needs a CUDA GPU, and PyTorch sees none")

    logger = _logger(trt)
    builder = trt.Builder(logger)
    network, parser = _parse(trt, builder, logger, onnx_path)
    weak_typing = hasattr(trt.BuilderFlag, "FP16")  # removed in TensorRT 11 with every weak-typing flag
    if fp16 and not weak_typing and not _has_half_tensors(trt, network):
        network, parser = _parse(trt, builder, logger, onnx_path, _autocast_fp16(trt, onnx_path))
    if int8 and not _has_layer_type(trt, network, "QUANTIZE", "DEQUANTIZE"):
        raise UserError(f"INT8 needs explicit quantization, and {onnx_path} has no QuantizeLinear/DequantizeLinear "
                        f"nodes: export a Q/DQ model (modelopt) first; calibration is not supported")

    config = builder.create_builder_config()
    workspace = int(workspace_gib * (1 << 30))
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace
    if weak_typing:
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if int8:
            config.set_flag(trt.BuilderFlag.INT8)

    dynamic = False
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape):
            dynamic = True
            profile.set_shape(tensor.name, *(_profile_shape(shape, b, image_size, tensor.name)
                                             for b in (min_batch, opt_batch, max_batch)))
        elif shape and not min_batch <= shape[0] <= max_batch:
            print(f"note: {onnx_path} has a fixed batch of {shape[0]}; the batch sizes asked for do not apply",
                  file=sys.stderr)
    if dynamic:
        config.add_optimization_profile(profile)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UserError(f"TensorRT could not build an engine from {onnx_path} (its messages above say why)")
    with atomic_write(engine_path) as f:
        f.write(plan)
    return engine_path


def _deserialize(trt, path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"TensorRT engine not found: {path}")
    runtime = trt.Runtime(_logger(trt))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise UserError(f"cannot load {path}: not a TensorRT plan, or one built by another TensorRT version or for "
                        f"another GPU (rebuild it here)")
    return runtime, engine


def load_engine(path: str | os.PathLike):
    """Deserialize a plan written by `build_engine` (an ICudaEngine)."""
    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise UserError("running a TensorRT engine needs a CUDA GPU, and PyTorch sees none")
    runtime, engine = _deserialize(trt, path)
    _RUNTIMES.append(runtime)
    return engine


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT8: torch.int8,
             trt.DataType.INT32: torch.int32, trt.DataType.BOOL: torch.bool}
    for name, value in (("BF16", torch.bfloat16), ("INT64", torch.int64), ("UINT8", torch.uint8)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = value
    if dtype not in table:
        raise UserError(f"TensorRT data type {dtype} has no PyTorch equivalent here")
    return table[dtype]


class TensorRTRunner:
    """`TensorRTRunner("model.plan")(images)`: images (N, 3, H, W) on CUDA in, the first output as a tensor out.

    Uses TensorRT 10's name-based API (tensor addresses, execute_async_v3) on PyTorch's current stream, and the
    binding-index API (execute_async_v2) of TensorRT 8 where v3 is missing.
    """

    def __init__(self, engine_path: str | os.PathLike):
        self._trt = trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise UserError("running a TensorRT engine needs a CUDA GPU, and PyTorch sees none")
        self.path = Path(engine_path)
        self._runtime, self.engine = _deserialize(trt, self.path)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise UserError(f"TensorRT could not create an execution context for {self.path} (out of GPU memory?)")
        self._v3 = hasattr(self.engine, "num_io_tensors") and hasattr(self.context, "execute_async_v3")
        if self._v3:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            self.outputs = [n for n in names if n not in self.inputs]
            self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        else:  # TensorRT 8.x
            names = [self.engine.get_binding_name(i) for i in range(self.engine.num_bindings)]
            self.inputs = [n for i, n in enumerate(names) if self.engine.binding_is_input(i)]
            self.outputs = [n for n in names if n not in self.inputs]
            self._dtypes = {n: _torch_dtype(trt, self.engine.get_binding_dtype(i)) for i, n in enumerate(names)}
            self._index = {n: i for i, n in enumerate(names)}
        if len(self.inputs) != 1 or not self.outputs:
            raise UserError(f"{self.path} has {len(self.inputs)} inputs and {len(self.outputs)} outputs; a classifier "
                            f"has one input and at least one output")

    @property
    def input_dtype(self) -> torch.dtype:
        return self._dtypes[self.inputs[0]]

    def _batch_range(self) -> str:
        try:
            low, _, high = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
            return f" (this engine takes batches {low[0]} to {high[0]})"
        except Exception:  # an engine without profiles, or TensorRT 8's binding API: no range to tell
            return ""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or not images.is_cuda:
            raise UserError("TensorRTRunner takes a CUDA tensor: move the images to the GPU first")
        name = self.inputs[0]
        x = images.to(self.input_dtype).contiguous()
        stream = torch.cuda.current_stream(x.device)
        with torch.cuda.device(x.device):
            if self._v3:
                if not self.context.set_input_shape(name, tuple(x.shape)):
                    raise UserError(f"input shape {tuple(x.shape)} does not fit {self.path}{self._batch_range()}")
                self.context.set_tensor_address(name, x.data_ptr())
                outputs = {}
                for out in self.outputs:
                    shape = tuple(self.context.get_tensor_shape(out))
                    outputs[out] = torch.empty(shape, dtype=self._dtypes[out], device=x.device)
                    self.context.set_tensor_address(out, outputs[out].data_ptr())
                ok = self.context.execute_async_v3(stream.cuda_stream)
            else:
                index = self._index[name]
                if not self.context.set_binding_shape(index, tuple(x.shape)):
                    raise UserError(f"input shape {tuple(x.shape)} does not fit {self.path}")
                bindings = [0] * len(self._index)
                bindings[index] = x.data_ptr()
                outputs = {}
                for out in self.outputs:
                    i = self._index[out]
                    shape = tuple(self.context.get_binding_shape(i))
                    outputs[out] = torch.empty(shape, dtype=self._dtypes[out], device=x.device)
                    bindings[i] = outputs[out].data_ptr()
                ok = self.context.execute_async_v2(bindings, stream.cuda_stream)
        if not ok:
            raise RuntimeError(f"TensorRT failed to run {self.path}")
        return outputs[self.outputs[0]]


# --- command line -------------------------------------------------------------------------------------------------


def build_parser(prog: str = "python -m image_classification.export.tensorrt") -> ArgumentParser:
    p = ArgumentParser(prog=prog,
                       description="Build a TensorRT engine from an ONNX export (upstream: trtexec --fp16 "
                                   "--workspace=10240), with an optimization profile for the dynamic batch.")
    p.add_argument("--onnx", required=True, metavar="FILE", help="ONNX file from model2onnx.py")
    p.add_argument("--engine", default=None, metavar="FILE", help="plan to write (default: the ONNX name, .plan)")
    p.add_bool_flag("--fp16", default=True, metavar="BOOL", help="allow FP16 kernels (default: true)")
    p.add_bool_flag("--int8", default=False, metavar="BOOL",
                    help="INT8 from a Q/DQ (explicitly quantized) ONNX; no calibration (default: false)")
    p.add_argument("--min-batch", type=int, default=1, metavar="N", help="smallest batch (default: 1)")
    p.add_argument("--opt-batch", type=int, default=None, metavar="N", help="batch to tune for (default: max)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, metavar="N",
                   help=f"largest batch (default: {DEFAULT_MAX_BATCH})")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="resolution, needed only for an ONNX with dynamic spatial dimensions")
    p.add_argument("--workspace-gib", type=float, default=DEFAULT_WORKSPACE_GIB, metavar="GIB",
                   help=f"builder workspace pool (default: {DEFAULT_WORKSPACE_GIB})")
    return p


def run(args) -> Path:
    """The command line's work, on parsed arguments; returns the engine's path."""
    from .sources import check_output

    engine = check_output(args.engine or Path(args.onnx).with_suffix(".plan"), flag="--engine", source=args.onnx,
                          source_kind="ONNX file")
    path = build_engine(args.onnx, engine, fp16=args.fp16, int8=args.int8, min_batch=args.min_batch,
                        opt_batch=args.opt_batch, max_batch=args.max_batch, image_size=args.image_size,
                        workspace_gib=args.workspace_gib)
    opt = args.max_batch if args.opt_batch is None else args.opt_batch
    precision = "int8" if args.int8 else ("fp16" if args.fp16 else "fp32")
    print(f"=> wrote {path} ({precision}, batch {args.min_batch} to {args.max_batch}, tuned for {opt})", flush=True)
    return path


def main(argv=None) -> None:
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
