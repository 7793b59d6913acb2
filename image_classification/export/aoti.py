"""AOTInductor packages: a model compiled ahead of time into one self-contained `.pt2` file.

The package runs with nothing but PyTorch (no project code, no Python model definition):

    model = torch._inductor.aoti_load_package("effnet.pt2")      # or image_classification.export.aoti.load_aoti
    logits = model(images)                                        # float32 NCHW, normalised; float32 logits

It takes float32 NCHW images whatever precision it was compiled in (an fp16 package casts inside) and returns
float32 logits; the batch dimension is dynamic (1..max_batch) unless a fixed batch size was asked for. The
preprocessing a caller needs (input size, crop_pct, interpolation, mean, std) and the class names travel inside the
package (`model.get_metadata()["image_classification"]`, a JSON string) and beside it (`FILE.pt2.json`).

    python -m image_classification.export.aoti --arch efficientnet-b0 --weights model.pth.tar --output b0.pt2
"""
from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from common.atomic_files import atomic_write
from common.cli_errors import ArgumentParser, UserError, run_cli
from image_classification.preprocessing import Preprocessing

METADATA_KEY = "image_classification"
FORMAT = "image_classification.aoti/1"
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class _Float32Interface(nn.Module):
    """float32 images in, float32 logits out, whatever dtype the weights have."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def metadata_path(path: str | os.PathLike) -> Path:
    """The JSON file written beside a package: `FILE.pt2.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"unknown device {device!r}: {exc}") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"AOTInductor packages are built for cpu or cuda, not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("a CUDA package needs a CUDA device to compile on: use device cpu")
    return device


def export_aoti(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    batch_size: int | None = None,
    max_batch: int = 256,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    fold_bn: bool = True,
    class_names: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
) -> Path:
    """Compile `model` (eval mode, BN folded) with AOTInductor into the package `path` (.pt2), written atomically.

    batch_size None: one package for every batch of 1..max_batch; an int: that batch only (a little faster).
    image_size None: the model's pretrained_cfg input size. precision fp16 needs device cuda. `model` is not
    modified. Returns the package's path; its metadata is also written to `FILE.pt2.json`. `preprocessing` (what
    the weights were trained with, from the loader) replaces the model's defaults in the metadata.
    """
    from image_classification.inference.fast import fold_batchnorm
    from image_classification.runtime.compile_options import configure_compile_cache

    path = Path(path)
    if path.suffix != ".pt2":
        raise UserError(f"an AOTInductor package file ends in .pt2: {path}")
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = _device(device)
    if precision == "fp16" and device.type != "cuda":
        raise UserError("an fp16 package needs device cuda (PyTorch's CPU kernels are slow or missing in fp16): "
                        "export fp32 for CPU")
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    if preprocessing is not None:
        cfg.update(preprocessing.as_cfg())
    if image_size is None:
        if not cfg.get("input_size"):
            raise UserError("give the image size: the model has no pretrained_cfg input size")
        image_size = int(cfg["input_size"][-1])
    if image_size < 1:
        raise UserError(f"image size must be positive, got {image_size}")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    if batch_size is None and max_batch < 1:
        raise UserError(f"max batch must be at least 1, got {max_batch}")
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        classes = cfg.get("num_classes")
        if classes is not None and len(class_names) != classes:
            raise UserError(f"{len(class_names)} class names given for a model with {classes} classes")
    dtype = PRECISIONS[precision]

    prepared = fold_batchnorm(model, strict=False) if fold_bn else copy.deepcopy(model).eval()
    prepared = prepared.to(device=device, dtype=dtype)
    wrapped = _Float32Interface(prepared, dtype).eval()

    static = batch_size is not None or max_batch == 1
    example_batch = batch_size if batch_size is not None else min(2, max_batch)
    example = torch.randn(example_batch, 3, image_size, image_size, device=device)
    dynamic_shapes = None
    if not static:
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=max_batch)},)
    try:
        with torch.no_grad():
            exported = torch.export.export(wrapped, (example,), dynamic_shapes=dynamic_shapes)
    except Exception as exc:  # export raises many types; name the model and the first line of the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"torch.export cannot capture {type(model).__name__}: {reason}") from exc

    # The package's resolution is fixed: a loader that preprocesses from pretrained_cfg must use it.
    if cfg.get("input_size") and tuple(cfg["input_size"][-2:]) != (image_size, image_size):
        cfg["model_input_size"] = cfg["input_size"]
    cfg["input_size"] = (3, image_size, image_size)
    metadata = {
        "format": FORMAT,
        "pretrained_cfg": _jsonable(cfg),
        "class_names": class_names,
        "image_size": image_size,
        "batch": {"fixed": example_batch} if static else {"min": 1, "max": max_batch},
        "input": "float32 NCHW, RGB, normalised with pretrained_cfg mean and std",
        "output": "float32 logits (N, num_classes)",
        "precision": precision,
        "device": device.type,
        "bn_folded": fold_bn,
        "torch_version": torch.__version__,
    }
    configure_compile_cache()
    inductor_configs = {"aot_inductor.metadata": {METADATA_KEY: json.dumps(metadata)}}
    with atomic_write(path) as f:
        torch._inductor.aoti_compile_and_package(exported, package_path=f, inductor_configs=inductor_configs)
    with atomic_write(metadata_path(path), "w") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")
    return path


class AOTIModel:
    """A loaded package: `model(images) -> float32 logits`; images are moved to the package's device."""

    def __init__(self, compiled, device: torch.device, metadata: dict):
        self.compiled = compiled
        self.device = device
        self.metadata = metadata

    @property
    def pretrained_cfg(self) -> dict:
        return self.metadata.get("pretrained_cfg", {})

    @property
    def class_names(self) -> list[str] | None:
        return self.metadata.get("class_names")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = self.metadata.get("batch", {})
        n = images.shape[0] if images.dim() else 0
        if "fixed" in batch and n != batch["fixed"]:
            raise ValueError(f"this package was compiled for batch {batch['fixed']}, got {n}")
        if "max" in batch and not 1 <= n <= batch["max"]:
            raise ValueError(f"this package takes batches of 1 to {batch['max']}, got {n}")
        with torch.inference_mode():
            return self.compiled(images.to(self.device, torch.float32).contiguous())


def load_aoti(path: str | os.PathLike, device: str | torch.device = "cpu") -> AOTIModel:
    """Load a package written by `export_aoti` (or any single-input AOTInductor package) onto `device`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"AOTInductor package not found: {path}")
    device = _device(device)
    try:
        index = -1 if device.index is None else device.index
        compiled = torch._inductor.aoti_load_package(str(path), device_index=index)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load AOTInductor package {path}: {reason}") from None
    raw = compiled.get_metadata().get(METADATA_KEY)
    metadata = json.loads(raw) if raw else {}
    built_for = metadata.get("device")
    if built_for and built_for != device.type:
        raise UserError(f"{path} was compiled for {built_for}, not {device.type}: load it on {built_for} "
                        f"or export it again for {device.type}")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return AOTIModel(compiled, device, metadata)


# --- command line -------------------------------------------------------------------------------------------------


def read_class_names(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read class names from {path}: {exc.strerror or exc}") from None
    return [line.strip() for line in lines if line.strip()]


def build_parser(prog: str = "python -m image_classification.export.aoti") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Compile a registered model ahead of time with AOTInductor into one self-contained .pt2 file "
                    "that runs with PyTorch alone (torch._inductor.aoti_load_package).",
    )
    parser.add_argument("--arch", required=True, help="registered model name (python -m image_classification.models)")
    parser.add_argument("--weights", default=None,
                        help="checkpoint to load (any supported layout); random weights when left out")
    parser.add_argument("--output", required=True, help="the package to write, FILE.pt2 (metadata: FILE.pt2.json)")
    parser.add_argument("--image-size", type=int, default=None, help="input resolution (default: the model's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device the package runs on")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="weight precision (fp16 needs --device cuda); the package always takes float32 input")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="compile for this batch size only (default: any batch from 1 to --max-batch)")
    parser.add_argument("--max-batch", type=int, default=256, help="largest batch of a dynamic-batch package")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="class count (default: the checkpoint's, or 1000 without a checkpoint)")
    parser.add_argument("--class-names", default=None, help="text file with one class name per line, stored inside")
    parser.add_bool_flag("--fold-bn", default=True, help="fold BatchNorm into the convolutions (default true)")
    return parser


def run(args) -> Path:
    """The command line's work, on parsed arguments; returns the package's path."""
    from image_classification.models import get_model_info
    from image_classification.quantization.state import restore_quantizers

    from .sources import check_output, load_model

    get_model_info(args.arch)  # unknown names fail before any file is read
    output = check_output(args.output, flag="--output", suffix=".pt2", source=args.weights)
    loaded = load_model(args.weights, args.arch, weights_flag="--weights", num_classes=args.num_classes,
                        restore_quantizers=restore_quantizers)
    num_classes = loaded.num_classes
    class_names = read_class_names(args.class_names) if args.class_names else loaded.class_names
    model = loaded.model
    start = time.perf_counter()
    export_aoti(model, output, batch_size=args.batch_size, max_batch=args.max_batch, image_size=args.image_size,
                device=args.device, precision=args.precision, fold_bn=args.fold_bn, class_names=class_names,
                preprocessing=loaded.preprocessing)
    batch = f"batch {args.batch_size}" if args.batch_size else f"batch 1..{args.max_batch}"
    print(f"wrote {output} ({args.arch}, {num_classes} classes, {args.precision} on {args.device}, {batch}) "
          f"in {time.perf_counter() - start:.1f} s; metadata in {metadata_path(output)}", file=sys.stdout)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
