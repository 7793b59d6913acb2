"""Classify images with a trained GPUNet (upstream's classify.py, made general):

    python classify.py --weights 0.65ms.pth.tar --image cat.jpg [--image DIR] [--image 'GLOB'] [--topk 5] [--json]
    python classify.py --arch gpunet-0 --pretrained --image cat.jpg  # published weights, hub cache

Prints each image's path, then its top-k classes as `<class>: xx.x%`. The architecture, class count, class names
and preprocessing (image size, crop, bicubic resizing, mean/std) come from the checkpoint or the model's metadata,
not a fixed 224 px. AMP on a GPU (with the inference fast path; --no-fast for the plain model), FP32 on the CPU.
An unreadable image is reported on stderr and skipped (exit status 1). See image_classification/inference/classify.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import run_cli  # noqa: E402
from gpunet import model_flags  # noqa: E402
from image_classification.inference import classify_flags  # noqa: E402


def add_model_arguments(p, g) -> None:
    model_flags.add_model_arguments(p, g, from_checkpoint=True)


def build_parser():
    return classify_flags.build_parser("classify.py", __doc__, add_model_arguments)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Imported after parsing: the classifier needs torch, and --help (or a bad flag) should not wait for it.
    from image_classification.cli import classify

    return classify.run(args, model_flags.MODEL_KWARGS)


if __name__ == "__main__":
    run_cli(main)
