"""Train or evaluate a GPUNet with upstream ConvNets' flags: `python main.py [flags] DATA_DIR`.

The same dialect as efficientnet/main.py (the flags common to every model live in image_classification/cli);
only the model flags differ. Model flags use underscores, as upstream's. Our extensions are marked [ext].
GPUNet's own recipes, in timm's dialect, are train.py and train_params/; launch.py with configs.yml holds the
same recipes in this one.
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
    g.add_argument("--dropout", type=float, default=None, help="dropout before the classifier (default: 0.2)")
    g.add_argument("--drop_path_rate", type=float, default=None,
                   help="stochastic depth, ramped over the blocks (default: the architecture's, 0.2; D1/D2: 0)")
    g.add_argument("--model_config", default=None, metavar="FILE",
                   help="[ext] an upstream-format GPUNet JSON that replaces the built-in architecture")


DIALECT = convnets.Dialect(
    prog="main.py", description=__doc__, family="gpunet", default_arch="gpunet-0",
    add_model_arguments=add_model_arguments, model_kwargs=("dropout", "drop_path_rate", "model_config"),
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
