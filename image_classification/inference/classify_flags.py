"""classify.py's command line, apart from classify.py itself so that building the parser (and `--help`) does not
import torch: efficientnet/classify.py and gpunet/classify.py import this first and the classifier only to run."""
from __future__ import annotations

import argparse
from collections.abc import Callable

from common.cli_errors import ArgumentParser, positive_int
from image_classification.data.choices import INTERPOLATIONS

DEFAULT_TOPK = 5
DEFAULT_BATCH = 32
PRECISIONS = {"AMP": "fp16", "FP32": "fp32"}


def build_parser(prog: str = "classify.py", description: str | None = None,
                 add_model_arguments: Callable[[ArgumentParser, argparse._ArgumentGroup], None] | None = None,
                 ) -> ArgumentParser:
    """classify.py's parser; `add_model_arguments` adds a model family's flags (upstream's classify.py took the
    architecture's model flags too), whose values cli/classify.run passes to the model's construction."""
    p = ArgumentParser(prog=prog, description=description or __doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", "-a", metavar="ARCH", default=None,
                   help="registered model name or alias (default: the architecture the checkpoint names)")
    p.add_argument("--weights", "--pretrained-from-file", dest="weights", metavar="FILE", default=None,
                   help="checkpoint: ours, upstream's, timm's, NGC's or a plain state dict")
    p.add_argument("--pretrained", action="store_true",
                   help="the published (NGC) weights of --arch from the torch hub cache (nothing is downloaded)")
    p.add_argument("--weights-kind", choices=("auto", "ema", "raw"), default="auto",
                   help="which weights of a training checkpoint: auto (EMA when present), ema or raw")
    p.add_argument("--image", "-i", dest="images", metavar="PATH", action="extend", nargs="+", required=True,
                   help="image file, directory (every image inside, recursively) or glob pattern; repeatable")
    p.add_argument("--topk", type=positive_int, default=None, metavar="K",
                   help=f"classes shown per image (default {DEFAULT_TOPK}, or the class count when smaller; "
                        "more than the class count is an error)")
    p.add_argument("-b", "--batch-size", type=positive_int, default=DEFAULT_BATCH, metavar="N",
                   help="images per forward pass")
    p.add_argument("--precision", type=str.upper, choices=tuple(PRECISIONS), default=None,
                   help="AMP (fp16 autocast; default on a GPU) or FP32 (default, and the only choice, on the CPU)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (also the default without a GPU)")
    p.add_argument("--image-size", type=positive_int, default=None, metavar="PX",
                   help="crop size (default: the checkpoint's model_cfg, else the model's)")
    p.add_argument("--crop-pct", type=float, default=None, metavar="F",
                   help="centre-crop fraction: resize to image-size / crop-pct, then crop (default: the model's)")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default=None,
                   help="resize interpolation (default: the model's, bicubic for EfficientNet and GPUNet)")
    p.add_argument("--labels", metavar="FILE", default=None,
                   help="class names: one per line, or a JSON list (overrides the checkpoint's and ImageNet's)")
    p.add_argument("--no-fast", dest="fast", action="store_false",
                   help="on a GPU, run the plain eval model instead of the inference fast path")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="the GPU fast path without torch.compile (starts faster, runs slower)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    g = p.add_argument_group("model flags (upstream's, with underscores)")
    g.add_argument("--num_classes", "--num-classes", dest="num_classes", type=positive_int, default=None,
                   metavar="N", help="class count (default: the checkpoint's, else its classifier's width); a "
                                     "checkpoint with another count is an error")
    if add_model_arguments is not None:
        add_model_arguments(p, g)
    return p
