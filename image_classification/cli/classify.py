"""classify.py's command line, shared by efficientnet/classify.py and gpunet/classify.py (their parser is
inference/classify_flags.py, the classifier inference/classify.py).

It sits here, above the quantization package, because an INT8-quantized checkpoint needs its quantizers restored
and, on a GPU, modelopt's CUDA kernels loaded before the first forward: both are the quantization package's, which
the inference library beneath it does not import.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import torch

from common.cli_errors import UserError
from image_classification.inference import classify
from image_classification.inference.classify_flags import DEFAULT_TOPK, PRECISIONS, build_parser
from image_classification.quantization.state import restore_quantizers


def _device_from_args(args) -> torch.device:
    if args.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def run(args: argparse.Namespace, model_kwargs: Sequence[str] = ()) -> int:
    """classify.py's run; `model_kwargs` names the model flags of `args` that go to the model's construction."""
    device = _device_from_args(args)
    precision = PRECISIONS[args.precision] if args.precision else None
    if precision == "fp16" and device.type != "cuda":
        why = "--cpu was given" if args.cpu else "no GPU is available"
        raise UserError(f"--precision AMP needs a GPU ({why}): use --precision FP32 on the CPU")
    paths = classify.expand_inputs(args.images)
    classifier = classify.load_classifier(
        args.arch, args.weights, device=device, weights_kind=args.weights_kind, pretrained=args.pretrained,
        image_size=args.image_size, crop_pct=args.crop_pct, labels=args.labels, interpolation=args.interpolation,
        precision=precision, fast=args.fast, compile=args.compile, batch_size=args.batch_size,
        num_classes=getattr(args, "num_classes", None),
        model_kwargs={k: getattr(args, k) for k in model_kwargs if getattr(args, k, None) is not None},
        restore_quantizers=restore_quantizers,
    )
    if classifier.quantized and classifier.device.type == "cuda":
        from image_classification.quantization.backend import load_cuda_kernels

        load_cuda_kernels()
    topk = min(DEFAULT_TOPK, classifier.num_classes) if args.topk is None else classifier.check_topk(args.topk)

    documents = []

    def on_result(path, preds):
        if args.json:
            documents.append({"image": path, "predictions": [
                {"class": name, "index": index, "probability": prob} for name, index, prob in preds]})
        else:
            print(classify.format_text(path, preds), flush=True)

    def on_error(path, reason):
        print(f"error: cannot read {path}: {reason}", file=sys.stderr, flush=True)

    errors = classify.classify_paths(classifier, paths, topk=topk, batch_size=args.batch_size, on_result=on_result,
                                     on_error=on_error)
    if args.json:
        print(json.dumps(documents, indent=2), flush=True)
    return 1 if errors else 0


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer killed by `| head`


def main(argv=None, *, prog: str = "classify.py", description: str | None = None) -> int:
    args = build_parser(prog, description).parse_args(argv)
    try:
        return run(args)
    except BrokenPipeError:  # the reader went away (`classify.py ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not fail again
        return EXIT_BROKEN_PIPE
