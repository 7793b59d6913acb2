"""Upstream ConvNets' command-line dialect (main.py flags), shared by efficientnet/main.py and gpunet/main.py.

Each package supplies its model flags (upstream spells them with underscores) and the family it trains; the
flags common to every model, their translation into the one TrainingConfig, and the run live here.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass

from common.cli_errors import ArgumentParser, UserError, positive_int
from image_classification.cli.run_flags import (
    add_compile_option_argument,
    add_data_backend_argument,
    add_deterministic_argument,
    add_fused_optimizer_argument,
    add_reliability_arguments,
    add_stream_priority_argument,
    reliability_config,
)
from image_classification.data.augmentations import policy_names
from image_classification.data.choices import reads_folder
from image_classification.quantization.options import add_quantization_arguments, options_from_args
from image_classification.training.config import (
    COMPILE_MODES,
    LR_SCHEDULES,
    MODEL_FLAGS,
    OPTIMIZERS,
    TrainingConfig,
)


@dataclass(frozen=True)
class Dialect:
    prog: str
    description: str
    family: str
    default_arch: str
    add_model_arguments: Callable[[ArgumentParser, argparse._ArgumentGroup], None]
    model_kwargs: tuple[str, ...]


# How this dialect spells the flag behind each setting where it is not "--" and the setting's name with dashes
# (validation messages name the flags typed here); tests/image_classification/cli checks it against the parser.
CONVNETS_FLAGS = {
    **MODEL_FLAGS, "data": "DIR", "random_erasing": "--reprob", "random_erasing_mode": "--remode",
    "compile_options": "--compile-option", "workers": "-j/--workers", "print_freq": "-p/--print-freq",
    "precision": "--amp/--amp-dtype/--tf32", "device": "--cpu", "save_checkpoints": "--no-checkpoints",
    "progress": "--no-progress", "fast_inference": "--no-fast", "inference_compile": "--no-compile",
    "val_interpolation": "--interpolation",
    "val_batch_size": "the validation batch size", "crop_ratio": "the crop aspect ratio range",
    "checkpoint_hist": "the number of kept checkpoints",
}

INTERPOLATIONS = ("bilinear", "bicubic", "random", "triangular")
AFFINITY_MODES = ("none", "socket", "socket_single", "socket_single_unique", "socket_unique_interleaved",
                  "socket_unique_contiguous")


def probability(value: str) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return p


def add_main_arguments(p: ArgumentParser, default_arch: str) -> None:
    p.add_argument("data", metavar="DIR", nargs="?", help="dataset root holding train/ and val/")
    add_data_backend_argument(p)
    p.add_argument("--interpolation", default="bilinear", choices=INTERPOLATIONS,
                   help="resize interpolation (random: bilinear or bicubic per training crop, as timm)")
    p.add_argument("--arch", "-a", metavar="ARCH", default=default_arch,
                   help="model architecture (python -m image_classification.models lists them)")
    p.add_argument("-j", "--workers", type=int, default=5, metavar="N", help="data loading workers (0: in process)")
    p.add_argument("--prefetch", type=positive_int, default=2, metavar="N", help="batches prefetched per worker")
    p.add_argument("--epochs", type=positive_int, default=90, metavar="N", help="epochs of the schedule")
    p.add_argument("--run-epochs", type=int, default=-1, metavar="N", help="run only N epochs of the schedule")
    p.add_argument("--early-stopping-patience", type=int, default=-1, metavar="N",
                   help="stop after N epochs without a new best top1 (-1: never)")
    p.add_argument("--image-size", type=int, default=None, help="resolution (default: the model's)")
    p.add_argument("-b", "--batch-size", type=positive_int, default=256, metavar="N", help="batch size per process")
    p.add_argument("--optimizer-batch-size", type=int, default=-1, metavar="N",
                   help="global batch per optimizer step, reached by gradient accumulation (-1: no accumulation)")
    p.add_argument("--lr", "--learning-rate", type=float, default=0.1, metavar="LR", dest="lr",
                   help="base learning rate (not scaled by batch size)")
    p.add_argument("--lr-schedule", default="step", choices=LR_SCHEDULES, help="LR policy")
    p.add_argument("--lr-steps", type=float, nargs="+", default=[30, 60, 80], metavar="EPOCH",
                   help="[ext] epochs at which the step schedule multiplies the LR by 0.1")
    p.add_argument("--end-lr", type=float, default=0.0, help="final LR of the cosine/linear schedule")
    p.add_argument("--warmup", type=float, default=0, metavar="E", help="warmup epochs (LR rises every iteration)")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="S")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup alpha")
    p.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA", help="[ext] cutmix alpha")
    # No default here (sgd is config_from_args'), so that --rmsprop-tf can tell a chosen optimizer from none.
    p.add_argument("--optimizer", default=None, choices=OPTIMIZERS,
                   help="sgd (default) | rmsprop (PyTorch eps) | rmsproptf (TF eps, inside the sqrt) | adamw | lamb")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", "--wd", type=float, default=1e-4, dest="weight_decay")
    p.add_argument("--bn-weight-decay", action="store_true", help="also decay BatchNorm parameters and biases")
    p.add_argument("--rmsprop-alpha", type=float, default=0.9)
    p.add_argument("--rmsprop-eps", type=float, default=1e-3)
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    p.add_argument("--clip-grad", type=float, default=None, metavar="NORM",
                   help="[ext] clip the gradient norm to NORM (default: no clipping)")
    p.add_argument("--sync-bn", action="store_true",
                   help="[ext] SyncBatchNorm under DDP: BatchNorm statistics over all processes' batches")
    p.add_argument("--print-freq", "-p", type=positive_int, default=10, metavar="N", help="iterations per log line")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="training checkpoint to continue from; auto: the workspace's latest checkpoint if there is "
                        "one, else start afresh (a requeued job's command line never changes)")
    p.add_argument("--static-loss-scale", type=float, default=128.0,
                   help="initial loss scale of the GradScaler (AMP fp16 only)")
    p.add_argument("--prof", type=int, default=-1, metavar="N", help="stop each train/val pass after N iterations")
    p.add_argument("--amp", action="store_true", help="automatic mixed precision (torch.amp)")
    p.add_argument("--amp-dtype", default="fp16", choices=("fp16", "bf16"), help="[ext] AMP type (bf16: no scaler)")
    p.add_bool_flag("--tf32", default=False, metavar="BOOL",
                    help="[ext] allow TF32 for FP32 convolutions and matmuls (the TF32 preset sets it)")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible runs")
    p.add_argument("--gather-checkpoints", type=int, default=0, metavar="N",
                   help="keep the last N per-epoch checkpoint_XXXX.pth.tar files (-1: all, 0: none besides "
                        "the --checkpoint-filename copy and model_best.pth.tar)")
    p.add_argument("--raport-file", default="experiment_raport.json", help="DLLogger JSON report, in --workspace")
    p.add_argument("--evaluate", action="store_true",
                   help="validate only, the weights of --pretrained-from-file, --resume or --pretrained")
    p.add_argument("--training-only", action="store_true", help="skip validation")
    p.add_argument("--no-checkpoints", action="store_false", dest="save_checkpoints", help="write no checkpoints")
    p.add_argument("--jit", default="no", choices=("no", "script"), help="TorchScript (deprecated by PyTorch)")
    p.add_argument("--checkpoint-filename", default="checkpoint.pth.tar", help="name of the latest checkpoint")
    p.add_argument("--workspace", default="./", metavar="DIR", help="where checkpoints and the report go")
    p.add_argument("--memory-format", default="nchw", choices=("nchw", "nhwc"), help="nhwc = channels_last")
    p.add_argument("--use-ema", type=float, default=None, metavar="DECAY", help="keep an EMA of the weights")
    p.add_argument("--augmentation", default=None, help=policy_names())
    p.add_argument("--gpu-affinity", default="none", choices=AFFINITY_MODES, help="pin processes to CPU cores")
    p.add_argument("--topk", type=positive_int, default=5, help="second accuracy metric, top-k")
    # extensions
    p.add_argument("--crop-scale", type=float, nargs=2, default=[0.08, 1.0], metavar=("MIN", "MAX"),
                   help="[ext] RandomResizedCrop area range (small images want milder crops, e.g. 0.6 1)")
    p.add_argument("--hflip", type=probability, default=0.5, metavar="P", help="[ext] horizontal flip probability")
    p.add_argument("--crop-pct", type=float, default=None, help="[ext] val centre-crop fraction (default: model's)")
    p.add_argument("--skip-bad-images", action="store_true", help="[ext] skip unreadable images instead of failing")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="[ext] also write TensorBoard scalars")
    p.add_argument("--no-progress", action="store_false", dest="progress", help="[ext] no progress bar")
    p.add_argument("--cpu", action="store_true", help="[ext] run on the CPU even if a GPU is present")
    add_deterministic_argument(p)
    p.add_argument("--compile", action="store_true",
                   help="[ext] torch.compile the model for training (the first steps compile; cached on disk); "
                        "the DGXA100 and H100 presets turn it on")
    p.add_argument("--eager", action="store_false", dest="compile",
                   help="[ext] train without torch.compile, whatever the preset says")
    p.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                   help="[ext] torch.compile mode for --compile (reduce-overhead: forward and backward as CUDA graphs)")
    add_compile_option_argument(p, compile_flag="--compile")
    add_fused_optimizer_argument(p)
    add_stream_priority_argument(p)
    p.add_argument("--no-fast", action="store_false", dest="fast_inference",
                   help="[ext] --evaluate/benchmark_inference on a GPU: time the plain model (autocast), not the fast "
                        "path (BN folded, weights in fp16, channels_last, torch.compile, CUDA graph)")
    p.add_argument("--no-compile", action="store_false", dest="inference_compile",
                   help="[ext] the fast path without torch.compile (no compile time; slower)")
    p.add_argument("--dry-run", action="store_true", help="[ext] print the resolved configuration and exit")
    add_reliability_arguments(p)
    # GPUNet's recipes in this dialect: timm's step decay, warmup start, random erasing, distillation.
    p.add_argument("--lr-decay-epochs", type=float, default=None, metavar="E",
                   help="[ext] step schedule: LR times --lr-decay-rate every E epochs (instead of --lr-steps)")
    p.add_argument("--lr-decay-rate", type=float, default=0.1, help="[ext] factor of each step decay")
    p.add_argument("--warmup-lr", type=float, default=0.0, help="[ext] LR at the start of the warmup")
    p.add_argument("--rmsprop-tf", action="store_true", help="[ext] same as --optimizer rmsproptf")
    p.add_argument("--reprob", type=float, default=0.0, help="[ext] random erasing probability")
    p.add_argument("--remode", default="pixel", choices=("const", "rand", "pixel"), help="[ext] random erasing fill")
    p.add_argument("--teacher", default=None, help="[ext] distil from this registered or timm model")
    p.add_argument("--teacher-checkpoint", default=None, metavar="PATH", help="[ext] the teacher's weights")
    p.add_argument("--teacher-img-size", type=int, default=None, help="[ext] the teacher's resolution")
    p.add_argument("--kd-temperature", type=float, default=1.0, help="[ext] softmax temperature of the KD term")
    p.add_argument("--kd-weight", type=float, default=1.0, help="[ext] weight of the KD term")


def add_weights_arguments(p: ArgumentParser, g: argparse._ArgumentGroup) -> None:
    g.add_argument("--num_classes", type=positive_int, default=None,
                   help="classes (default: the number of class folders, 1000 for synthetic data)")
    g.add_argument("--pretrained-from-file", default=None, metavar="PATH", help="initial weights (any layout)")
    g.add_argument("--pretrained", action="store_true", help="NGC weights from the torch hub cache")
    g.add_argument("--pretrained-weights", default="auto", choices=("auto", "ema", "raw"),
                   help="[ext] which weights of a training checkpoint to start from (auto: EMA if present)")
    g.add_argument("--fresh-classifier", action="store_true",
                   help="[ext] accept pretrained weights with another class count and start a new classifier")


def build_parser(dialect: Dialect) -> ArgumentParser:
    parser = ArgumentParser(prog=dialect.prog, description=dialect.description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_main_arguments(parser, dialect.default_arch)
    group = parser.add_argument_group("model flags (upstream spelling, with underscores)")
    add_weights_arguments(parser, group)
    dialect.add_model_arguments(parser, group)
    add_quantization_arguments(parser)
    return parser


def optimizer_from_args(args: argparse.Namespace) -> str:
    if not args.rmsprop_tf:
        return args.optimizer or "sgd"
    if args.optimizer not in (None, "rmsprop", "rmsproptf"):
        raise UserError(f"--rmsprop-tf makes the optimizer rmsproptf, which conflicts with --optimizer "
                        f"{args.optimizer}: drop one of the two")
    return "rmsproptf"


def config_from_args(args: argparse.Namespace, dialect: Dialect) -> TrainingConfig:
    if args.jit == "script":
        raise UserError("--jit script is not supported: TorchScript is deprecated in PyTorch; "
                        "export with model2onnx.py or torch.export instead")
    precision = args.amp_dtype if args.amp else ("tf32" if args.tf32 else "fp32")
    kwargs = {k: getattr(args, k) for k in dialect.model_kwargs if getattr(args, k) is not None}
    augmentation = None if args.augmentation in (None, "none", "None") else args.augmentation
    cfg = TrainingConfig(
        arch=args.arch, num_classes=args.num_classes, model_kwargs=kwargs,
        pretrained_from_file=args.pretrained_from_file, pretrained=args.pretrained,
        pretrained_weights=args.pretrained_weights, fresh_classifier=args.fresh_classifier,
        data=args.data, data_backend=args.data_backend, image_size=args.image_size, crop_pct=args.crop_pct,
        interpolation=args.interpolation, augmentation=augmentation, crop_scale=tuple(args.crop_scale),
        hflip=args.hflip, workers=args.workers, prefetch=args.prefetch, skip_bad_images=args.skip_bad_images,
        epochs=args.epochs, run_epochs=args.run_epochs, batch_size=args.batch_size,
        optimizer_batch_size=args.optimizer_batch_size, optimizer=optimizer_from_args(args), lr=args.lr,
        lr_schedule=args.lr_schedule, lr_steps=tuple(args.lr_steps), end_lr=args.end_lr, warmup=args.warmup,
        momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay, clip_grad=args.clip_grad,
        sync_bn=args.sync_bn,
        bn_weight_decay=args.bn_weight_decay, rmsprop_alpha=args.rmsprop_alpha, rmsprop_eps=args.rmsprop_eps,
        label_smoothing=args.label_smoothing, mixup=args.mixup, cutmix=args.cutmix, use_ema=args.use_ema,
        early_stopping_patience=args.early_stopping_patience, precision=precision,
        static_loss_scale=args.static_loss_scale, memory_format=args.memory_format,
        device="cpu" if args.cpu else "auto", deterministic=args.deterministic, seed=args.seed,
        fast_inference=args.fast_inference, inference_compile=args.inference_compile, compile=args.compile,
        compile_mode=args.compile_mode, compile_options=dict(args.compile_options),
        fused_optimizer=args.fused_optimizer, stream_priority=args.stream_priority,
        print_freq=args.print_freq, prof=args.prof,
        evaluate=args.evaluate, training_only=args.training_only, save_checkpoints=args.save_checkpoints,
        checkpoint_filename=args.checkpoint_filename, gather_checkpoints=args.gather_checkpoints,
        resume=args.resume, workspace=args.workspace, raport_file=args.raport_file,
        tensorboard=args.tensorboard, progress=args.progress, topk=args.topk, gpu_affinity=args.gpu_affinity,
        lr_decay_epochs=args.lr_decay_epochs, lr_decay_rate=args.lr_decay_rate, warmup_lr=args.warmup_lr,
        random_erasing=args.reprob, random_erasing_mode=args.remode, teacher=args.teacher,
        teacher_checkpoint=args.teacher_checkpoint, teacher_img_size=args.teacher_img_size,
        kd_temperature=args.kd_temperature, kd_weight=args.kd_weight, flag_names=dict(CONVNETS_FLAGS),
        **reliability_config(args),
    )
    if args.interpolation == "random":
        cfg.val_interpolation = "bicubic"  # validation needs one fixed interpolation
    from image_classification.models import get_model_info

    info = get_model_info(cfg.arch)  # fails early, with one line, on an unknown name
    if info.family != dialect.family:
        raise UserError(f"{dialect.prog} trains {dialect.family} models, and {info.name} is not one "
                        f"(use {info.family}/{dialect.prog})")
    cfg.arch = info.name
    return cfg.validate()


def require_weights_to_evaluate(cfg: TrainingConfig, args: argparse.Namespace) -> None:
    """--evaluate without weights would report the accuracy of a random network as if it were a result.

    Two runs want exactly that network: launch.py's benchmark_inference mode times it (its preset is --evaluate
    with no weights, and its accuracy is not the point), and synthetic data (a backend that reads no folder) has
    random labels, so no accuracy on it means anything. A --dry-run only shows the configuration, so the check
    comes after it."""
    if not cfg.evaluate or cfg.resume or cfg.pretrained_from_file or cfg.pretrained:
        return
    launched = getattr(args, "launch", None) or {}
    if launched.get("mode") == "benchmark_inference" or not reads_folder(cfg.data_backend):
        return
    raise UserError("--evaluate needs the weights to score, and none were given: pass --pretrained-from-file FILE "
                    "(weights in any layout), --resume CHECKPOINT (a training checkpoint) or --pretrained (the "
                    "published weights)")


def run(args: argparse.Namespace, dialect: Dialect) -> dict | None:
    quantization = options_from_args(args)
    if quantization is not None:
        from image_classification.cli import quantize

        return quantize.run(args, quantization, dialect.default_arch, lambda a: config_from_args(a, dialect))
    cfg = config_from_args(args, dialect)
    if args.dry_run:
        print(json.dumps(cfg.to_dict(), indent=2, default=str))
        return None
    require_weights_to_evaluate(cfg, args)
    from common.gpu_affinity import set_affinity
    from image_classification.quantization.state import check_fp32_run, restore_quantizers
    from image_classification.training.trainer import print_summary, train

    cfg = check_fp32_run(cfg, dialect.prog)
    set_affinity(cfg.gpu_affinity)
    summary = train(cfg, restore_quantizers=restore_quantizers)
    print_summary(summary)
    return summary
