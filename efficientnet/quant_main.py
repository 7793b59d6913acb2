"""INT8 quantization of an EfficientNet with NVIDIA Model Optimizer: upstream's quant_main.py, working.

    python quant_main.py --arch efficientnet-quant-b0 --pretrained-from-file fp32.pth.tar [main.py flags] DATA_DIR

Calibrates the FP32 weights to INT8 (--calib-method histogram|max, --num-calib-batches N), validates the result
(PTQ), then fine-tunes it with fake quantization for --epochs (QAT) with main.py's training flags; checkpoints
record the quantizer state, so --resume, --evaluate, classify.py and model2onnx.py (Q/DQ ONNX for TensorRT) load
them as they are. --evaluate alone measures the PTQ model. Any EfficientNet works; efficientnet-quant-b0/b4 are
upstream's names (the 1x1-conv SE TensorRT prefers). --arch defaults to a quantized checkpoint's own architecture,
else to efficientnet-quant-b0. Needs nvidia-modelopt (the [quant] extra); upstream's
pytorch-quantization is no longer installable. Presets: launch.py --mode quantize; recipes: quantization/*.sh.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, run_cli  # noqa: E402
from efficientnet import main as fp32_main  # noqa: E402
from image_classification.cli import convnets, quantize  # noqa: E402

DIALECT = dataclasses.replace(fp32_main.DIALECT, prog="quant_main.py", description=__doc__,
                              default_arch="efficientnet-quant-b0")


def build_parser() -> ArgumentParser:
    return quantize.build_parser(convnets.build_parser(DIALECT))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Imported after parsing: the trainer needs torch, and --help (or a bad flag) should not wait for it.
    from image_classification.training.trainer import exit_status

    return exit_status(convnets.run(args, DIALECT))


if __name__ == "__main__":
    run_cli(main)
