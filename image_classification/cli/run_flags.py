"""Flags both training dialects share, spelt alike in each (timm has no equivalents): the data backend, the CUDA
stream priority, and how a run meets a scheduler's signals, a workspace already in use, divergence and a silent
rank."""
from __future__ import annotations

import argparse

from common.cli_errors import ArgumentParser, positive_float, positive_int
from image_classification.data.choices import BACKENDS
from image_classification.training.config import SIGUSR1_ACTIONS, STREAM_PRIORITIES


def add_data_backend_argument(p, *, extension: bool = False) -> None:
    """`extension`: the dialect's upstream has no such flag (its help marks it [ext])."""
    p.add_argument("--data-backend", metavar="BACKEND", default="pytorch", choices=BACKENDS,
                   help=("[ext] " if extension else "") + "pytorch | synthetic | dali-cpu | dali-gpu (DALI installed) "
                        "| pytorch-gpu (JPEG decoding with nvJPEG on the GPU, no DALI) (default: pytorch)")


def add_stream_priority_argument(p) -> None:
    p.add_argument("--stream-priority", default="high", choices=STREAM_PRIORITIES,
                   help="[ext] CUDA stream priority of training and evaluation: high (default) runs them ahead of the "
                        "GPU data pipeline (dali-gpu, pytorch-gpu), whose kernels fill the gaps; normal: the default "
                        "stream")


def key_value(value: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as a Python literal (True, 8, 0.5, "text"), else kept as the text itself."""
    import ast

    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    try:
        return key.strip(), ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key.strip(), raw


def add_deterministic_argument(p) -> None:
    p.add_argument("--deterministic", action="store_true",
                   help="[ext] deterministic GPU kernels, so a seeded run repeats bit for bit (slower)")


def add_compile_option_argument(p, *, compile_flag: str) -> None:
    p.add_argument("--compile-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   dest="compile_options",
                   help=f"[ext] a TorchInductor option for {compile_flag}, over the training defaults "
                        "(realize_reads_threshold=8); repeatable")


def add_fused_optimizer_argument(p) -> None:
    p.add_argument("--fused-optimizer", default="auto", choices=("auto", "on", "off"),
                   help="[ext] fused CUDA optimizer kernels (sgd, adamw; auto: on a GPU), else foreach (default auto)")


def add_reliability_arguments(p: ArgumentParser) -> None:
    """Flags of both dialects (ConvNets and timm spell them alike): how a run meets signals, a used workspace,
    divergence and a silent rank."""
    p.add_argument("--sigusr1", default="stop", choices=SIGUSR1_ACTIONS,
                   help="[ext] SIGUSR1 (SLURM's --signal=USR1@SECONDS warning): stop = save and exit with status 75, "
                        "like SIGTERM (default); checkpoint = save and go on")
    p.add_argument("--overwrite", action="store_true",
                   help="[ext] start afresh in a workspace that already holds a checkpoint (without it the run "
                        "refuses, so a finished or interrupted run is never replaced by accident)")
    p.add_argument("--max-nonfinite-steps", type=positive_int, default=20, metavar="N",
                   help="[ext] stop as diverged after N consecutive steps with a NaN/inf loss (exit status 3; "
                        "single overflow steps of fp16 AMP are normal) (default 20)")
    p.add_argument("--dist-timeout", type=positive_float, default=600.0, metavar="SECONDS",
                   help="[ext] how long a rank waits for the others in a collective before the run fails with one "
                        "line (a stopped or dead rank); raise it if a checkpoint write or the first compile takes "
                        "longer (default 600)")


def reliability_config(args: argparse.Namespace) -> dict:
    return dict(sigusr1=args.sigusr1, overwrite=args.overwrite, max_nonfinite_steps=args.max_nonfinite_steps,
                dist_timeout=args.dist_timeout)
