"""Run main.py with presets from configs.yml, as upstream ConvNets' launch.py:

    python launch.py --model gpunet-0 --precision AMP --mode convergence --platform DGXA100 /imagenet

Presets merge as precision -> platform -> model[platform][precision] -> mode; flags given here override them.
INT8: `--model gpunet-quant-0 --mode quantize ... --pretrained-from-file FP32_WEIGHTS` (see quant_main.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import run_cli  # noqa: E402
from common.config_presets import launch  # noqa: E402
from gpunet.main import build_parser, run  # noqa: E402

CONFIGS = Path(__file__).resolve().with_name("configs.yml")


def main(argv=None) -> int:
    summary = launch(argv, CONFIGS, build_parser, run)
    if summary is None:  # --help or --dry-run: nothing ran, and the trainer (torch) is not imported just to say 0
        return 0
    from image_classification.training.trainer import exit_status

    return exit_status(summary)


if __name__ == "__main__":
    run_cli(main)
