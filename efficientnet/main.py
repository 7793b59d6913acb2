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
from efficientnet import model_flags  # noqa: E402
from image_classification.cli import convnets  # noqa: E402
from image_classification.training.config import TrainingConfig  # noqa: E402

DIALECT = convnets.Dialect(
    prog="main.py", description=__doc__, family="efficientnet", default_arch="efficientnet-b0",
    add_model_arguments=model_flags.add_model_arguments, model_kwargs=model_flags.MODEL_KWARGS,
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
