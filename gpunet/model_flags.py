"""GPUNet's model flags, in the ConvNets dialect's spelling (underscores), for main.py, classify.py and model2onnx.py.

main.py builds the network from them; classify.py and model2onnx.py read a checkpoint that records the values it
was trained with (a GPUNet JSON included), so there they default to the checkpoint's, and the command line wins.
"""
from __future__ import annotations

import argparse

from common.cli_errors import ArgumentParser

# The keywords these flags set on image_classification.models.create_model.
MODEL_KWARGS = ("dropout", "drop_path_rate", "model_config")


def add_model_arguments(p: ArgumentParser, g: argparse._ArgumentGroup, *, from_checkpoint: bool = False) -> None:
    """`from_checkpoint`: for classify.py and model2onnx.py (the checkpoint's values by default; the help says
    which flags change nothing in inference)."""
    where = "the checkpoint's, else " if from_checkpoint else ""
    inert = "; no effect on a loaded model's outputs (eval mode)" if from_checkpoint else ""
    g.add_argument("--dropout", type=float, default=None,
                   help=f"dropout before the classifier (default: {where}0.2{inert})")
    g.add_argument("--drop_path_rate", type=float, default=None,
                   help=f"stochastic depth, ramped over the blocks (default: {where}the architecture's, 0.2; "
                        f"D1/D2: 0{inert})")
    names = ("--model_config", "--model-config") if from_checkpoint else ("--model_config",)
    g.add_argument(*names, dest="model_config", default=None, metavar="FILE",
                   help=f"[ext] an upstream-format GPUNet JSON that replaces the built-in architecture "
                        f"(default: {where}the built-in one)")
