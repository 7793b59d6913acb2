"""A trained classifier as a server runs it: numpy batches of normalised images in, float32 logits out.

Used by PyTriton (`pytriton_server`) and by the Python-backend model that `deploy.py --format python` writes.
On a GPU it is the project's fast path (`inference.fast.fast_predictor`: BN folded, fp16 weights, channels_last,
torch.compile, one CUDA graph for the largest batch the server sends, smaller batches padded into it). On a CPU
the same model without the GPU-only parts: BN folded, fp32, channels_last, eager (no compile to wait for).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from common.cli_errors import UserError

if TYPE_CHECKING:
    from image_classification.models.checkpoint import QuantizerRestorer

DEVICES = ("cpu", "cuda")


@dataclass
class ServingModel:
    """`model(images) -> logits`: images a float (N, 3, H, W) numpy array, logits float32 (N, classes)."""

    predictor: object
    arch: str
    class_names: list[str]
    preprocessing: dict
    device: torch.device
    precision: str

    @property
    def image_size(self) -> int:
        return int(self.preprocessing["image_size"])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if not images.flags.writeable:  # Triton hands over read-only views of its buffers; torch wants to own
            images = images.copy()
        logits = self.predictor(torch.from_numpy(np.ascontiguousarray(images)))
        return logits.float().cpu().numpy()

    def describe(self) -> str:
        return (f"{self.arch} ({self.num_classes} classes, {self.image_size} px) on {self.device}, "
                f"{self.precision}")


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N'; 'cuda' where PyTorch sees no GPU is one line."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"device must be cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type not in DEVICES:
        raise UserError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but PyTorch sees no CUDA device: serve on the CPU (--device cpu)")
    return resolved


def load_serving_model(
    weights: str | os.PathLike | None,
    *,
    arch: str | None = None,
    pretrained: bool = False,
    device: str = "cpu",
    precision: str | None = None,
    max_batch_size: int = 64,
    compile: bool = True,
    weights_kind: str = "auto",
    log=None,
    restore_quantizers: QuantizerRestorer | None = None,
) -> ServingModel:
    """Load a checkpoint (any layout the project reads) for serving batches of up to `max_batch_size` images.

    precision: fp16 (the default on a GPU) or fp32 (the default, and the only choice, on a CPU).
    restore_quantizers (quantization.state's, passed by the command line): lets `weights` be INT8-quantized.
    """
    from image_classification.inference.classify import load_classifier
    from image_classification.inference.fast import fast_predictor, prepare_for_inference

    dev = resolve_device(device)
    precision = precision or ("fp16" if dev.type == "cuda" else "fp32")
    if precision not in ("fp16", "fp32"):
        raise UserError(f"precision must be fp16 or fp32, got {precision!r}")
    if precision == "fp16" and dev.type != "cuda":
        raise UserError("fp16 serving needs a GPU: use --precision fp32 on the CPU")
    if max_batch_size < 1:
        raise UserError(f"the largest batch must be at least 1, got {max_batch_size}")
    # Loaded on the CPU in fp32; the predictor below moves and casts its own copy.
    classifier = load_classifier(arch, weights, device="cpu", pretrained=pretrained, precision="fp32", fast=False,
                                 weights_kind=weights_kind, restore_quantizers=restore_quantizers)
    prep = classifier.preprocessing
    preprocessing = {"image_size": prep.image_size, "resize_size": prep.resize_size, "crop_pct": prep.crop_pct,
                     "interpolation": prep.interpolation, "mean": list(prep.mean), "std": list(prep.std)}
    if dev.type == "cuda":
        predictor = fast_predictor(classifier.model, device=dev, precision=precision, batch_size=max_batch_size,
                                   image_size=prep.image_size, compile=compile,
                                   log=log or (lambda line: print(line, file=sys.stderr, flush=True)))
    else:
        predictor = prepare_for_inference(classifier.model, device=dev, precision="fp32", channels_last=True,
                                          fold_bn=True, compile=None)
    return ServingModel(predictor=predictor, arch=classifier.arch, class_names=list(classifier.class_names),
                        preprocessing=preprocessing, device=dev, precision=precision)
