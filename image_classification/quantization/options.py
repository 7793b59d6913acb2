"""The quantization flags of the ConvNets dialect (main.py, quant_main.py, launch.py --mode quantize).

They live in main.py's parser too, because launch.py's presets can only set options that parser knows: the
`quantize` mode sets `quantize: true`, which hands the run to the quantization workflow. Without modelopt these
flags still parse (a dry run needs nothing else); the run then says how to install it.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from common.cli_errors import UserError, positive_int

from .recipe import CALIB_METHODS, DEFAULT_CALIB_BATCHES, DEFAULT_CALIB_METHOD, DEFAULT_PERCENTILE


@dataclass(frozen=True)
class QuantOptions:
    calib_method: str = DEFAULT_CALIB_METHOD
    num_calib_batches: int = DEFAULT_CALIB_BATCHES
    percentile: float = DEFAULT_PERCENTILE
    skip_calibration: bool = False




def add_quantization_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("INT8 quantization with NVIDIA Model Optimizer (quant_main.py; launch.py --mode quantize)")
    g.add_argument("--quantize", action="store_true",
                   help="[ext] calibrate the --pretrained-from-file weights to INT8, then fine-tune them with fake "
                        "quantization (QAT) for --epochs; what quant_main.py does")
    g.add_argument("--calib-method", default=None, choices=CALIB_METHODS,
                   help=f"activation ranges: max, or a percentile of a histogram (default: {DEFAULT_CALIB_METHOD}, "
                        f"upstream's); weights always use their per-channel max")
    g.add_argument("--num-calib-batches", "--calib-batches", dest="num_calib_batches", type=positive_int,
                   default=None, metavar="N",
                   help=f"training batches to calibrate on (default: {DEFAULT_CALIB_BATCHES})")
    g.add_argument("--percentile", type=float, default=None, metavar="P",
                   help=f"--calib-method histogram: the percentile kept (default: {DEFAULT_PERCENTILE})")
    g.add_argument("--skip-calibration", action="store_true",
                   help="start from a checkpoint that is already quantized (calibration is skipped for those anyway)")


def options_from_args(args: argparse.Namespace) -> QuantOptions | None:
    """The quantization options, or None for an FP32 run (where setting any of them is a mistake worth a line)."""
    given = {name: getattr(args, name, None) for name in ("calib_method", "num_calib_batches", "percentile")}
    if not getattr(args, "quantize", False):
        flags = [f"--{name.replace('_', '-')}" for name, value in given.items() if value is not None]
        if getattr(args, "skip_calibration", False):
            flags.append("--skip-calibration")
        if flags:
            raise UserError(f"{', '.join(flags)} only apply to quantization: use quant_main.py (or add --quantize)")
        return None
    method = given["calib_method"] or DEFAULT_CALIB_METHOD
    if given["percentile"] is not None:
        if method != "histogram":
            raise UserError("--percentile applies to --calib-method histogram, not max")
        if not 0.0 < given["percentile"] <= 100.0:
            raise UserError(f"--percentile must be in (0, 100], got {given['percentile']}")
    return QuantOptions(
        calib_method=method,
        num_calib_batches=given["num_calib_batches"] or DEFAULT_CALIB_BATCHES,
        percentile=DEFAULT_PERCENTILE if given["percentile"] is None else given["percentile"],
        skip_calibration=bool(getattr(args, "skip_calibration", False)),
    )
