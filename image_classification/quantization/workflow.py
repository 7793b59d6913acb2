"""What quant_main.py and launch.py --mode quantize run: FP32 weights -> calibrated INT8 model (PTQ) -> QAT ->
checkpoints. Their command line (the parser's defaults, the architecture a checkpoint names, the preset check) is
image_classification/cli/quantize.py's; this module starts from the TrainingConfig and the QuantOptions.

    python efficientnet/quant_main.py --arch efficientnet-quant-b0 --pretrained-from-file fp32.pth.tar [flags] DATA
    python efficientnet/launch.py --model efficientnet-quant-b0 --mode quantize --precision AMP --platform DGXA100 \\
        DATA --pretrained-from-file fp32.pth.tar

Where a run starts decides what it does:
- FP32 weights (--pretrained-from-file, or --pretrained): insert the INT8 quantizers, calibrate them on
  --num-calib-batches training batches with --calib-method, write <workspace>/calibrated.pth.tar, validate it (the
  PTQ accuracy), then fine-tune for --epochs with fake quantization (QAT) through the normal Trainer. --evaluate
  stops after the PTQ validation.
- a quantized checkpoint (--pretrained-from-file): no calibration; QAT goes on from its weights and ranges with a
  fresh optimizer and schedule, or --evaluate validates it.
- --resume of a quantized training checkpoint: the interrupted QAT run continues (epoch, optimizer, RNG).
Every checkpoint written records the quantizer state, so evaluation (--evaluate), classify.py, model2onnx.py (Q/DQ
ONNX) and --resume rebuild the quantized model from the file alone.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli_errors import UserError

from .options import QuantOptions

CALIBRATED_FILE = "calibrated.pth.tar"
QUANTIZER_LIST = "quant_summary.txt"


@dataclass(frozen=True)
class Start:
    kind: str  # fp32 (calibrate first) | quantized (QAT or evaluation from it) | resume (continue a QAT run)
    weights: str | bool  # a checkpoint path, or True for the published FP32 weights


def starting_point(cfg, opts: QuantOptions) -> Start:
    from image_classification.models.checkpoint import read_quantization_record

    if cfg.resume:
        if cfg.pretrained_from_file or cfg.pretrained:
            raise UserError("--resume continues a quantized run with its own weights: drop --pretrained-from-file "
                            "and --pretrained")
        if read_quantization_record(cfg.resume) is None:
            raise UserError(f"{cfg.resume} holds FP32 weights (no quantizer state): quantize them with "
                            f"--pretrained-from-file {cfg.resume}; --resume continues a quantized run")
        return Start("resume", cfg.resume)
    if cfg.pretrained_from_file:
        if read_quantization_record(cfg.pretrained_from_file) is not None:
            return Start("quantized", cfg.pretrained_from_file)
        if opts.skip_calibration:
            raise UserError(f"--skip-calibration needs a quantized checkpoint, and {cfg.pretrained_from_file} holds "
                            f"FP32 weights: drop the flag to calibrate them")
        return Start("fp32", cfg.pretrained_from_file)
    if cfg.pretrained:
        if opts.skip_calibration:
            raise UserError("--skip-calibration needs a quantized checkpoint; the published weights are FP32")
        return Start("fp32", True)
    raise UserError("quantization starts from trained weights: pass the FP32 weights with --pretrained-from-file "
                    "(or --pretrained for the published ones)")


def _model_cfg(info, cfg, image_size: int, crop_pct: float, mean, std) -> dict:
    # What validation used, as the Trainer records it, so classify.py and exports preprocess the same way.
    return {**info.metadata(), "input_size": (3, image_size, image_size), "crop_pct": crop_pct, "mean": mean,
            "std": std, "interpolation": cfg.val_interpolation or cfg.interpolation}


def post_training_quantization(cfg, opts: QuantOptions, weights) -> dict:
    """Calibrate the FP32 model, print the quantizer summary, validate (unless --training-only) and write the
    calibrated checkpoint; returns the PTQ summary (val metrics, checkpoint path)."""
    import torch  # here, not at the top: quant_main.py --help imports this module (cli/quantize.py) without torch

    from common.atomic_files import atomic_save
    from image_classification.inference.evaluate import evaluate
    from image_classification.models import create_model, get_model_info
    from image_classification.models.checkpoint import QUANTIZATION_KEY
    from image_classification.runtime import distributed
    from image_classification.training.checkpointing import FORMAT
    from image_classification.training.run_data import build_run_data

    from .calibrate import calibrate, calibration_loader
    from .state import make_record
    from .summary import format_summary, write_quantizer_list

    dist = distributed.init_distributed(cfg.device, cfg.dist_timeout)
    device = dist.device
    if cfg.precision == "fp16" and device.type == "cpu":
        raise UserError("fp16 AMP needs a GPU; on the CPU use bf16 (--amp-dtype bf16) or FP32")
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
    log = print if dist.is_main else (lambda *a, **k: None)
    info = get_model_info(cfg.arch)
    # Calibrate at the resolution the model will serve at: ranges depend on it.
    image_size = cfg.val_image_size or cfg.image_size or info.input_size
    crop_pct = cfg.crop_pct or info.crop_pct
    mean, std = tuple(cfg.mean or info.mean), tuple(cfg.std or info.std)
    batches, class_names = calibration_loader(cfg, image_size=image_size, crop_pct=crop_pct, mean=mean, std=std,
                                              device=device, num_classes=cfg.num_classes)
    num_classes = cfg.num_classes or (len(class_names) if class_names else 1000)
    val = None
    if not cfg.training_only:
        data = build_run_data(cfg, image_size=image_size, val_image_size=image_size, crop_pct=crop_pct, mean=mean,
                          std=std, device=device, rank=dist.rank, world_size=dist.world_size, need_train=False)
        if class_names is not None and data.class_names != class_names:
            raise UserError(f"train/ and val/ class folders of {cfg.data} differ: calibration and validation must "
                            f"see the same classes")
        val = data.val

    memory_format = torch.channels_last if cfg.memory_format == "nhwc" else torch.contiguous_format
    model = create_model(cfg.arch, pretrained=weights, num_classes=num_classes, fresh_classifier=cfg.fresh_classifier,
                         weights=cfg.pretrained_weights, **cfg.model_kwargs).to(device, memory_format=memory_format)
    source = "the published weights" if weights is True else str(weights)
    log(f"=> calibrating {info.name} ({source}) for INT8 with NVIDIA Model Optimizer", flush=True)
    result = calibrate(model, batches, method=opts.calib_method, num_batches=opts.num_calib_batches,
                       percentile=opts.percentile, log=log)
    workspace = Path(cfg.workspace)
    listing = workspace / QUANTIZER_LIST
    if dist.is_main:
        write_quantizer_list(model, listing)
    log(format_summary(model, result.describe(), listing), flush=True)

    metrics: dict = {}
    if val is not None:
        metrics = evaluate(model, val, device=device, precision=cfg.precision, topk=cfg.topk, max_batches=cfg.prof)
        k = cfg.topk
        log(f"=> PTQ ({result.describe()}): val top1 {metrics['top1']:.2f}% top{k} {metrics[f'top{k}']:.2f}% "
            f"on {metrics['images']} images", flush=True)

    path = workspace / CALIBRATED_FILE
    # Written even with --no-checkpoints when QAT follows: it is the model QAT starts from.
    write = cfg.save_checkpoints or not cfg.evaluate
    if dist.is_main and write:
        details = {"calib_method": result.method, "percentile": result.percentile, "calib_batches": result.batches,
                   "calib_images": result.images, "ptq_top1": metrics.get("top1"), "fp32_weights": source}
        atomic_save({
            "format": FORMAT,
            "epoch": 0,
            "iteration": 0,
            "arch": info.name,
            "num_classes": num_classes,
            "class_names": class_names,
            "model_kwargs": dict(cfg.model_kwargs),
            "model_cfg": _model_cfg(info, cfg, image_size, crop_pct, mean, std),
            "best_prec1": metrics.get("top1", 0.0),
            "best_epoch": -1,
            "state_dict": model.state_dict(),
            QUANTIZATION_KEY: make_record(model, **details),
            "config": cfg.to_dict(),
        }, path)
        log(f"=> calibrated checkpoint: {path}", flush=True)
    distributed.barrier()
    return {"arch": info.name, "mode": "ptq", "calibration": dataclasses.asdict(result), "val": metrics,
            "checkpoint": str(path) if write else None, "workspace": str(workspace)}


def quantization_aware_training(cfg, announce: bool) -> dict:
    """QAT (or, with --evaluate, validation) of the quantized model in cfg.pretrained_from_file; `announce` prints
    its quantizer summary (a calibration that just ran has printed it already)."""
    from image_classification.runtime import distributed

    from .summary import describe_record, format_summary
    from .trainer import QuantTrainer

    trainer = QuantTrainer(cfg)
    try:
        if announce and trainer.dist.is_main:
            print(format_summary(trainer.model, describe_record(getattr(trainer.model, "quantization", {}))),
                  flush=True)
        return trainer.run()
    finally:
        distributed.shutdown()


def _is_main_process() -> bool:
    # From the environment, as init_distributed reads it: the process group may already be shut down here.
    return int(os.environ.get("RANK", "0")) == 0


def _write_summary(summary: dict, workspace: Path) -> None:
    from common.atomic_files import atomic_write

    with atomic_write(workspace / "summary.json", "w") as f:
        json.dump(summary, f, indent=2, default=str)


def quantization_config(cfg):
    """`cfg` as a quantization run needs it (in place; returned): eager QAT, and no inference fast path."""
    if cfg.compile and not cfg.evaluate:
        # Measured on the CPU: Dynamo guards on every quantized module's own class, recompiles past its limit and
        # falls back to eager: an epoch of 4 steps took 37 s instead of 1.2 s (val top1 62.5% vs 61.7%). The
        # DGXA100/H100 presets turn --compile on for every mode, so this is a note, not an error.
        print("note: quantization-aware training runs eager; --compile is ignored (modelopt's quantized modules make "
              "torch.compile recompile until it falls back to eager)", file=sys.stderr, flush=True)
        cfg.compile = False
    # The GPU inference fast path folds BatchNorm into the convolution weights, whose INT8 ranges were calibrated
    # on the unfolded weights: quantized models are validated as they are.
    cfg.fast_inference = False
    return cfg


def quantize(cfg, opts: QuantOptions) -> dict:
    """The whole run from where it starts (see the module's docstring); returns its summary. `cfg` has been
    through `quantization_config`."""
    from common.gpu_affinity import set_affinity
    from image_classification.runtime import distributed
    from image_classification.training.trainer import print_summary

    from .backend import import_modelopt

    import_modelopt()
    start = starting_point(cfg, opts)
    set_affinity(cfg.gpu_affinity)

    ptq = None
    qat_start = start.weights
    if start.kind == "fp32":
        ptq = post_training_quantization(cfg, opts, start.weights)
        if cfg.evaluate:
            if _is_main_process():
                _write_summary(ptq, Path(cfg.workspace))
                if ptq["val"]:
                    k = cfg.topk
                    print(f"=> val top1 (PTQ): {ptq['val']['top1']:.2f}%, top{k}: {ptq['val'][f'top{k}']:.2f}% "
                          f"on {ptq['val']['images']} images", flush=True)
            distributed.shutdown()
            return ptq
        qat_start = ptq["checkpoint"]
    qat_cfg = dataclasses.replace(cfg, pretrained_from_file=qat_start, pretrained=False,
                                  fresh_classifier=False if start.kind == "fp32" else cfg.fresh_classifier)
    summary = quantization_aware_training(qat_cfg, announce=start.kind != "fp32")
    if ptq is not None:
        summary["ptq"] = {"val": ptq["val"], "calibration": ptq["calibration"], "checkpoint": ptq["checkpoint"]}
        if _is_main_process():
            _write_summary(summary, Path(cfg.workspace))
    print_summary(summary)
    return summary
