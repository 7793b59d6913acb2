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
from gpunet import model_flags  # noqa: E402
from image_classification.cli import convnets  # noqa: E402
from image_classification.training.config import TrainingConfig  # noqa: E402

DIALECT = convnets.Dialect(
    prog="main.py", description=__doc__, family="gpunet", default_arch="gpunet-0",
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
