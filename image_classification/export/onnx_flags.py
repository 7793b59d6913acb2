"""model2onnx.py's command line, apart from onnx.py so that building the parser (and `--help`) does not import torch:
efficientnet/model2onnx.py and gpunet/model2onnx.py import this first and the exporter only to run. The tensor
names, opsets and tolerances the help text shows live here too, and onnx.py takes them from here."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from common.cli_errors import ArgumentParser

INPUT_NAME = "INPUT__0"  # Triton's names, as upstream's triton kits use
OUTPUT_NAME = "OUTPUT__0"
DEFAULT_OPSET = 17
MIN_OPSET = 17
PRECISION_CHOICES = ("fp32", "fp16")
FP32_ATOL = 1e-3
# fp16 keeps about three significant digits: the tolerance grows with the outputs' scale.
FP16_RTOL = 1e-2


@dataclass(frozen=True)
class ExportDialect:
    """What differs between the families' model2onnx.py: the family they export and its model flags."""

    prog: str = "python -m image_classification.export.onnx"
    family: str | None = None  # None: any registered model
    default_arch: str | None = None
    add_model_arguments: Callable[[ArgumentParser, argparse._ArgumentGroup], None] | None = None
    model_kwargs: tuple[str, ...] = field(default_factory=tuple)


DEFAULT_DIALECT = ExportDialect()  # any registered model: `python -m image_classification.export.onnx`


def build_parser(dialect: ExportDialect = DEFAULT_DIALECT) -> ArgumentParser:
    what = f"{dialect.family} model" if dialect.family else "registered model"
    p = ArgumentParser(prog=dialect.prog, description=f"Export a {what} to ONNX (inputs {INPUT_NAME}, outputs "
                       f"{OUTPUT_NAME}, dynamic batch) and check the file against PyTorch with onnxruntime.")
    default = f" (default: the checkpoint's, else {dialect.default_arch})" if dialect.default_arch else \
        " (default: the checkpoint's)"
    p.add_argument("--arch", "-a", default=None, metavar="NAME", help="model name" + default)
    p.add_argument("--pretrained-from-file", default=None, metavar="PATH",
                   help="weights: a training checkpoint or a plain state dict (none: random weights, a warning)")
    p.add_argument("--pretrained", action="store_true", help="the published weights, if in the torch hub cache")
    p.add_argument("--ema", action="store_true", help="export the checkpoint's EMA weights (state_dict_ema)")
    p.add_argument("--num-classes", "--num_classes", dest="num_classes", type=int, default=None, metavar="N",
                   help="class count (default: the checkpoint's, else 1000)")
    p.add_argument("--output", "-o", default=None, metavar="PATH",
                   help="ONNX file (default: the checkpoint's name with .onnx, else <arch>.onnx)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="input resolution (default: the checkpoint's, else the architecture's)")
    p.add_argument("-b", "--batch-size", type=int, default=2, metavar="N",
                   help="batch of the traced sample and of the second check (default: 2; the batch stays dynamic)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset, {MIN_OPSET} or later (default: {DEFAULT_OPSET})")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to trace (default: cpu)")
    p.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES,
                   help="fp16 exports a pure half graph with half inputs and outputs (default: fp32)")
    p.add_bool_flag("--dynamic-batch", default=True, metavar="BOOL",
                    help="symbolic batch dimension (default: true; false fixes it at -b)")
    p.add_bool_flag("--fold-bn", default=False, metavar="BOOL",
                    help="fold BatchNorm into the convolutions in PyTorch before exporting (default: false; the "
                         "exporter folds them in eval mode anyway)")
    p.add_argument("--no-fold-bn", dest="fold_bn", action="store_false", help="do not fold (the default)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the onnxruntime check against PyTorch")
    p.add_argument("--atol", type=float, default=None, metavar="X",
                   help=f"tolerance of the check (default: {FP32_ATOL:g} for fp32; for fp16 {FP16_RTOL:g} of the "
                        f"largest output, at least {FP16_RTOL:g}); INT8 Q/DQ exports are judged as a group instead")
    p.add_argument("--quantized", action="store_true",
                   help="insist on an INT8-quantized checkpoint (quant_main.py's), exported with Q/DQ nodes; "
                        "quantized checkpoints are exported that way without it too")
    p.add_argument("--int8-engine", default="auto", choices=("auto", "on", "off"),
                   help="quantized exports: also build an INT8 TensorRT engine beside the file (auto: where "
                        "TensorRT and a GPU are present; on: fail without them; default: auto)")
    if dialect.add_model_arguments is not None:
        dialect.add_model_arguments(p, p.add_argument_group("model flags"))
    return p
