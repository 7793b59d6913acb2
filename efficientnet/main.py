"""Train or evaluate an EfficientNet with upstream ConvNets' flags: `python main.py [flags] DATA_DIR`.

Model flags use underscores (--num_classes, --dropout, ...), as upstream's. Our extensions are marked [ext].
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, run_cli  # noqa: E402
from image_classification.cli import convnets  # noqa: E402
from image_classification.training.config import TrainingConfig  # noqa: E402


def add_model_arguments(p: ArgumentParser, g: argparse._ArgumentGroup) -> None:
    g.add_argument("--conv_init", default="fan_in", choices=("fan_in", "fan_out"))
    g.add_argument("--bn_momentum", type=float, default=0.01)
    g.add_argument("--bn_epsilon", type=float, default=1e-3)
    g.add_argument("--survival_prob", type=float, default=None, help="stochastic depth (default: 1.0; b4: 0.8)")
    g.add_argument("--dropout", type=float, default=None, help="dropout before the classifier (default per model)")
    p.add_bool_flag("--trt", group=g, default=None, metavar="BOOL",
                    help="1x1-conv squeeze-excitation (TensorRT-friendly; default: false, efficientnet-quant-*: "
                         "true); a real boolean, unlike upstream's")


DIALECT = convnets.Dialect(
    prog="main.py", description=__doc__, family="efficientnet", default_arch="efficientnet-b0",
    add_model_arguments=add_model_arguments,
    model_kwargs=("conv_init", "bn_momentum", "bn_epsilon", "survival_prob", "dropout", "trt"),
)


def build_parser() -> ArgumentParser:
    return convnets.build_parser(DIALECT)


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    return convnets.config_from_args(args, DIALECT)


def run(args: argparse.Namespace) -> dict | None:
    return convnets.run(args, DIALECT)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Imported after parsing: the trainer needs torch, and --help (or a bad flag) should not wait for it.
    from image_classification.training.trainer import exit_status

    return exit_status(run(args))


if __name__ == "__main__":
    run_cli(main)
