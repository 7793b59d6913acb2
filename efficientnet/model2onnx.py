"""Export an EfficientNet to ONNX for Triton or TensorRT, checked against PyTorch with onnxruntime.

    python model2onnx.py --arch efficientnet-b0 --pretrained-from-file model.pth.tar [--output model.onnx]
        [--image-size N] [-b N] [--opset 17] [--device cpu|cuda] [--precision fp32|fp16] [--trt BOOL]
        [--num_classes N] [--bn_epsilon X] [--dropout P] ...  (upstream's model flags; default: the checkpoint's)

Unlike upstream's: inputs INPUT__0 and outputs OUTPUT__0 with a dynamic batch, opset 17 or later, no removed
torch arguments, a default output name even without a checkpoint, preprocessing in the file's metadata, and an
onnxruntime check before the file is written (--no-verify skips it). GPUNets: gpunet/model2onnx.py.
A quant_main.py checkpoint exports as INT8 Q/DQ (QuantizeLinear/DequantizeLinear, counted and checked) and, where
TensorRT and a GPU are present, also as an INT8 engine (--int8-engine); --quantized insists on such a checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, run_cli  # noqa: E402
from efficientnet import model_flags  # noqa: E402
from image_classification.export import onnx_flags  # noqa: E402


def add_model_arguments(p: ArgumentParser, g: argparse._ArgumentGroup) -> None:
    model_flags.add_model_arguments(p, g, from_checkpoint=True)


DIALECT = onnx_flags.ExportDialect(
    prog="model2onnx.py", family="efficientnet", default_arch="efficientnet-b0",
    add_model_arguments=add_model_arguments, model_kwargs=model_flags.MODEL_KWARGS,
)


def build_parser() -> ArgumentParser:
    return onnx_flags.build_parser(DIALECT)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    # Imported after parsing: the exporter needs torch, and --help (or a bad flag) should not wait for it.
    from image_classification.export import onnx as onnx_export

    onnx_export.run(args, DIALECT)


if __name__ == "__main__":
    run_cli(main)
