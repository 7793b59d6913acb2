"""EfficientNet's model flags, in upstream's spelling (underscores), for main.py, classify.py and model2onnx.py.

Upstream's three tools took the same model flags from the architecture's parser. main.py builds the network from
them (their defaults are upstream's); classify.py and model2onnx.py read a checkpoint that records the values it
was trained with, so there they default to the checkpoint's, and what is given on the command line wins.
"""
from __future__ import annotations

import argparse

from common.cli_errors import ArgumentParser

# The keywords these flags set on image_classification.models.create_model.
MODEL_KWARGS = ("conv_init", "bn_momentum", "bn_epsilon", "survival_prob", "dropout", "trt")


def add_model_arguments(p: ArgumentParser, g: argparse._ArgumentGroup, *, from_checkpoint: bool = False) -> None:
    """`from_checkpoint`: for classify.py and model2onnx.py, every default is None (the checkpoint's value, else the
    architecture's), and the help says which flags change nothing in inference, where upstream took them too."""

    def default(value):
        return None if from_checkpoint else value

    where = "the checkpoint's, else " if from_checkpoint else ""
    inert = "; no effect on a loaded model's outputs (eval mode)" if from_checkpoint else ""
    init = "; no effect once weights are loaded" if from_checkpoint else ""
    g.add_argument("--conv_init", default=default("fan_in"), choices=("fan_in", "fan_out"),
                   help=f"kaiming-normal initialisation of the convolutions (default: {where}fan_in{init})")
    g.add_argument("--bn_momentum", type=float, default=default(0.01),
                   help=f"BatchNorm momentum, PyTorch's convention (default: {where}0.01{inert})")
    g.add_argument("--bn_epsilon", type=float, default=default(1e-3),
                   help=f"BatchNorm epsilon (default: {where}1e-3)")
    g.add_argument("--survival_prob", type=float, default=None,
                   help=f"stochastic depth (default: {where}1.0; b4: 0.8{inert})")
    g.add_argument("--dropout", type=float, default=None,
                   help=f"dropout before the classifier (default: {where}per model{inert})")
    p.add_bool_flag("--trt", group=g, default=None, metavar="BOOL",
                    help=f"1x1-conv squeeze-excitation, TensorRT-friendly, upstream's --trt (default: {where}false; "
                         "efficientnet-quant-*: true); weights of the other SE shape are reshaped to it; a real "
                         "boolean, unlike upstream's")
