"""The quantizer state in checkpoints: write it, restore it, and keep FP32 entry points from misreading it.

A quantized checkpoint is one of this project's training checkpoints plus a `quantization` entry:
`modelopt_state` (modelopt's description of the quantizers: which modules were swapped, each quantizer's settings)
and how it was calibrated. The quantizers' ranges (`..._quantizer._amax`) are in `state_dict` with the weights.
Loading one means: build the FP32 architecture the checkpoint names, restore the quantizers from `modelopt_state`,
then load `state_dict` as usual. Reading the entry is the checkpoint format's (models/checkpoint.py); the loaders
there call `restore_quantizers` when the caller passes it. Everything here except `make_record` and
`restore_quantizers` works without modelopt.
"""
from __future__ import annotations

import sys

import torch.nn as nn

from common.cli_errors import UserError
from image_classification.models.checkpoint import quantization_record, read_checkpoint


def is_quantized_model(model: nn.Module) -> bool:
    # Without modelopt imported, no module of this process can be one of its quantized modules.
    if "modelopt.torch.quantization" not in sys.modules:
        return False
    from modelopt.torch.quantization.utils import is_quantized

    return bool(is_quantized(model))


def make_record(model: nn.Module, **details) -> dict:
    """The `quantization` entry for a checkpoint of `model`; `details` (calibration method, batches, ...) are kept
    beside modelopt's state so that a reader knows how the ranges came about."""
    from .backend import import_modelopt, modelopt_version

    _, mto = import_modelopt()
    return {**details, "modelopt_state": mto.modelopt_state(model), "modelopt_version": modelopt_version()}


def restore_quantizers(model: nn.Module, record: dict, source: str) -> nn.Module:
    """Put the recorded quantizers into the FP32 `model` (in place), ready for its state dict."""
    from .backend import import_modelopt, quiet

    _, mto = import_modelopt(f"{source} is an INT8-quantized checkpoint; loading it")
    arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    try:
        with quiet():
            mto.restore_from_modelopt_state(model, record["modelopt_state"])
    except Exception as exc:  # modelopt raises assorted types for a state that does not match the model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"the quantizer state in {source} does not fit {arch}: {first}") from None
    model.quantization = {k: v for k, v in record.items() if k != "modelopt_state"}
    return model


def quantized_checkpoint_hint(path) -> str:
    return (f"{path} is an INT8-quantized checkpoint (quant_main.py wrote it): fine-tune it further with "
            f"quant_main.py --pretrained-from-file {path} (--resume {path} to continue an interrupted run), or "
            f"evaluate it with --evaluate --pretrained-from-file {path}")


def check_fp32_run(cfg, prog: str = "main.py"):
    """An FP32 training run must not start from INT8 weights: it would train the fake-quantized model and write
    checkpoints without the quantizer state. Evaluation is fine: the loaders rebuild the quantizers, and the
    GPU fast path (which folds BatchNorm into the weights the ranges were calibrated for) is turned off."""
    quantized = [path for path in (cfg.pretrained_from_file, cfg.resume)
                 if path and quantization_record(read_checkpoint(path)) is not None]
    if not quantized:
        return cfg
    if not cfg.evaluate:
        raise UserError(f"{prog} trains FP32 models, and {quantized_checkpoint_hint(quantized[0])}")
    cfg.fast_inference = False
    if cfg.resume and cfg.resume in quantized and not cfg.pretrained_from_file:
        # The Trainer builds the model before it resumes: the quantizers must come with the weights it starts from.
        cfg.pretrained_from_file = cfg.resume
    return cfg
