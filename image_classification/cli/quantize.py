"""quant_main.py's command line (both families) and launch.py --mode quantize: main.py's flags with quantization on.

    python efficientnet/quant_main.py --arch efficientnet-quant-b0 --pretrained-from-file fp32.pth.tar [flags] DATA

cli/convnets.py's run hands a run here when its flags ask for quantization (quant_main.py's parser sets --quantize,
the quantize presets set `quantize: true`) and passes the config it built: this module never imports convnets, so
the one dialect's run stays above it. What the run does is quantization/workflow.py's.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from common.cli_errors import UserError
from image_classification.quantization import workflow
from image_classification.quantization.options import QuantOptions


def build_parser(main_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """main.py's parser (cli/convnets.build_parser) with quantization on: quant_main.py's command line. --arch
    defaults to the architecture of a quantized starting checkpoint (its quantizers fit no other), else to the
    dialect's default."""
    main_parser.set_defaults(quantize=True, arch=None)
    return main_parser


def resolve_arch(args: argparse.Namespace, default_arch: str) -> None:
    if args.arch is not None:
        return
    from image_classification.models.checkpoint import quantization_record, read_checkpoint

    args.arch = default_arch
    start = args.resume if args.resume != "auto" else None
    start = start or args.pretrained_from_file
    if start and Path(start).is_file():
        checkpoint = read_checkpoint(start)
        if quantization_record(checkpoint) is not None and isinstance(checkpoint.get("arch"), str):
            args.arch = checkpoint["arch"]


def check_launch_preset(args: argparse.Namespace) -> None:
    """launch.py --mode quantize takes its QAT recipe from the model's preset; an FP32 training preset (hundreds of
    epochs, warmup, heavy augmentation) would be a wrong recipe, not a quantization run."""
    launch = getattr(args, "launch", None)
    if not launch:
        return
    from common.config_presets import load_presets

    presets = load_presets(launch["cfg_file"])
    preset = presets["models"][launch["model"]][launch["platform"]][launch["precision"]] or {}
    if not preset.get("quantize"):
        quantizing = sorted(name for name, platforms in presets["models"].items()
                            if any((p or {}).get("quantize") for ps in platforms.values() for p in (ps or {}).values()))
        raise UserError(f"{launch['model']}'s preset is an FP32 training recipe, not a quantization one: quantize "
                        f"with --model {' or '.join(quantizing) or '<a model whose preset sets quantize: true>'}")


def run(args: argparse.Namespace, opts: QuantOptions, default_arch: str,
        config_from_args: Callable[[argparse.Namespace], object]) -> dict | None:
    """The run of `args` (`opts`: their quantization options); `config_from_args` is the dialect's, called once
    --arch is resolved. None for a --dry-run, which prints the configuration."""
    check_launch_preset(args)
    resolve_arch(args, default_arch)
    cfg = workflow.quantization_config(config_from_args(args))
    if args.dry_run:
        print(json.dumps({**cfg.to_dict(), "quantization": dataclasses.asdict(opts)}, indent=2, default=str))
        return None
    return workflow.quantize(cfg, opts)
