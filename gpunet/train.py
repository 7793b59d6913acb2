r"""Train GPUNet (or any registered model) with the timm-style flags of upstream GPUNet's train.py:

    python train.py /imagenet --model gpunet_0 --sched step --decay-epochs 2.4 --decay-rate .97 --opt rmsproptf \
        -b 192 --epochs 450 --opt-eps .001 -j 8 --warmup-lr 1e-6 --weight-decay 1e-5 --drop 0.3 --drop-path 0.2 \
        --model-ema --model-ema-decay 0.9999 --aa rand-m9-mstd0.5 --remode pixel --reprob 0.2 --lr .06 --amp \
        --img-size 320

Same Trainer, data, checkpoints and DLLogger report as efficientnet/main.py: this file only translates flags.
timm flags that this project does not implement are accepted by the parser and refused, with the reason, when
set to anything but their default; nothing is silently ignored.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli_errors import ArgumentParser, DefaultsHelpFormatter, UserError, run_cli  # noqa: E402
from image_classification.cli.run_flags import (  # noqa: E402
    add_compile_option_argument,
    add_data_backend_argument,
    add_deterministic_argument,
    add_fused_optimizer_argument,
    add_reliability_arguments,
    add_stream_priority_argument,
    reliability_config,
)
from image_classification.data.augmentations import policy_names  # noqa: E402
from image_classification.training.config import COMPILE_MODES, TrainingConfig  # noqa: E402
from image_classification.training.schedule import SCHEDULES  # noqa: E402

# timm optimizer names -> ours. timm's "sgd" is Nesterov SGD; "momentum" is plain momentum SGD.
OPTIMIZERS = {"sgd": ("sgd", True), "nesterov": ("sgd", True), "momentum": ("sgd", False),
              "rmsprop": ("rmsprop", False), "rmsproptf": ("rmsproptf", False), "adamw": ("adamw", False),
              "lamb": ("lamb", False)}


def schedule_names() -> list[str]:
    """--sched's names: every registered schedule. This dialect has always listed cosine before linear (the
    registry's order is main.py's), so its help and refusal keep that wording; schedules added later follow."""
    first = [name for name in ("step", "cosine", "linear") if name in SCHEDULES]
    return first + [name for name in SCHEDULES if name not in first]


# How this dialect spells the flag behind each setting where it is not "--" and the setting's name with dashes
# (validation messages name the flags typed here); tests/image_classification/cli checks it against the parser.
TIMM_FLAGS = {
    "optimizer": "--opt", "lr_schedule": "--sched", "batch_size": "-b/--batch-size", "warmup": "--warmup-epochs",
    "workers": "-j/--workers", "print_freq": "--log-interval", "label_smoothing": "--smoothing",
    "use_ema": "--model-ema-decay", "image_size": "--img-size", "pretrained_from_file": "--initial-checkpoint",
    "crop_scale": "--scale", "crop_ratio": "--ratio", "random_erasing": "--reprob", "random_erasing_mode": "--remode",
    "random_erasing_count": "--recount", "val_batch_size": "the validation batch size (-b/--batch-size times -vb)",
    "end_lr": "--min-lr", "lr_decay_epochs": "--decay-epochs", "lr_decay_rate": "--decay-rate",
    "memory_format": "--channels-last", "precision": "--amp-dtype", "compile": "--torchcompile",
    "compile_mode": "--torchcompile-mode", "compile_options": "--compile-option",
    "rmsprop_eps": "--opt-eps", "adam_betas": "--opt-betas", "resume_optimizer": "--no-resume-opt",
    "data": "DIR", "workspace": "--output/--experiment", "raport_file": "--dllogger-name",
    "topk": "top-k", "dropout": "--drop", "drop_path_rate": "--drop-path", "model_config": "--model-config",
    "arch": "--model", "augmentation": "--aa", "interpolation": "--train-interpolation",
    "val_interpolation": "--interpolation", "nesterov": "--opt", "lr_schedule_epochs": "--epochs",
    "device": "--cpu", "progress": "--no-progress",
}

# Flags timm has and we do not implement: (flag dest, default, why).
UNSUPPORTED = [
    ("dataset", "", "only image folders are read (train/ and val/ class folders)"),
    ("gp", None, "GPUNet's head always uses average pooling"),
    ("lr_noise", None, "learning-rate noise is not implemented"),
    ("lr_cycle_mul", 1.0, "cyclic schedules are not implemented"),
    ("lr_cycle_limit", 1, "cyclic schedules are not implemented"),
    ("epoch_repeats", 0.0, "epoch repeats are not implemented"),
    ("aug_splits", 0, "augmentation splits (AugMix JSD training) are not implemented"),
    ("jsd", False, "the JSD loss is not implemented"),
    ("drop_block", None, "DropBlock is not part of GPUNet"),
    ("bn_tf", False, "GPUNet's BatchNorm settings are fixed by its architecture"),
    ("bn_momentum", None, "GPUNet's BatchNorm settings are fixed by its architecture"),
    ("bn_eps", None, "GPUNet's BatchNorm settings are fixed by its architecture"),
    ("split_bn", False, "split BatchNorm (for augmentation splits) is not implemented"),
    ("model_ema_force_cpu", False, "the EMA is kept on the training device"),
    ("recovery_interval", 0, "checkpoints are atomic and SIGTERM saves one mid-epoch; recovery files are not needed"),
    ("save_images", False, "saving input images is not implemented"),
    ("apex_amp", False, "apex is not used; --amp is torch.amp"),
    ("tta", 0, "test-time augmentation is not implemented"),
    ("torchscript", False, "TorchScript is deprecated in PyTorch; export with model2onnx.py"),
    ("log_wandb", False, "Weights & Biases logging is not built in; use --tensorboard"),
    ("clip_mode", "norm", "only --clip-mode norm is implemented"),
    ("eval_metric", "top1", "the best checkpoint is chosen by top1"),
]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="train.py", description=__doc__, formatter_class=DefaultsHelpFormatter)
    p.add_argument("-c", "--config", default="", metavar="FILE", help="YAML file of flag defaults (read first)")
    p.add_argument("data_dir", metavar="DIR", nargs="?", help="dataset root with train/ and val/ (or validation/)")
    p.add_argument("--dllogger-name", default=None, metavar="PATH",
                   help="DLLogger JSON report (default: log.json in the output folder; upstream: /logs/log.json)")
    g = p.add_argument_group("dataset and model")
    g.add_argument("--dataset", "-d", default="", help="timm dataset type")
    g.add_argument("--train-split", default="train", help="training folder under DIR")
    g.add_argument("--val-split", default="validation", help="validation folder (falls back to val/)")
    g.add_argument("--model", default="gpunet_0", help="registered model name (gpunet_0, 0.65ms, GPUNet-0, ...)")
    g.add_argument("--model-config", default=None, metavar="FILE", help="[ext] an upstream-format GPUNet JSON")
    g.add_argument("--pretrained", action="store_true", help="published NGC weights from the torch hub cache")
    g.add_argument("--initial-checkpoint", default="", metavar="PATH", help="start from these weights")
    g.add_argument("--resume", default="", metavar="PATH",
                   help="continue a run (last.pth.tar), optimizer included; auto: the experiment folder's "
                        "last.pth.tar if there is one, else start afresh")
    g.add_argument("--no-resume-opt", action="store_true", help="on --resume, do not restore the optimizer")
    g.add_argument("--num-classes", type=int, default=None, help="classes (default: the class folders' count)")
    g.add_argument("--gp", default=None, help="global pool type")
    g.add_argument("--img-size", type=int, default=None, help="resolution (default: the model's)")
    g.add_argument("--input-size", type=int, nargs=3, default=None, metavar="N", help="C H W (H = W only)")
    g.add_argument("--crop-pct", type=float, default=None,
                   help="validation centre-crop fraction (default: the model's)")
    g.add_argument("--mean", type=float, nargs=3, default=None, metavar="M",
                   help="normalisation mean, R G B (default: the model's)")
    g.add_argument("--std", type=float, nargs=3, default=None, metavar="S",
                   help="normalisation std, R G B (default: the model's)")
    g.add_argument("--interpolation", default="", help="validation resize interpolation (default: the model's)")
    g.add_argument("-b", "--batch-size", type=int, default=32, metavar="N", help="batch size per process")
    g.add_argument("-vb", "--validation-batch-size-multiplier", type=int, default=1, metavar="N",
                   help="validation batch = this times -b")
    g = p.add_argument_group("optimizer")
    g.add_argument("--opt", default="sgd", help=f"one of {', '.join(OPTIMIZERS)}")
    g.add_argument("--opt-eps", type=float, default=None, metavar="EPS",
                   help="optimizer epsilon (default: the optimizer's)")
    g.add_argument("--opt-betas", type=float, nargs=2, default=None, metavar="BETA",
                   help="adamw/lamb betas (default: the optimizer's, 0.9 0.999)")
    g.add_argument("--momentum", type=float, default=0.9, help="optimizer momentum")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay")
    g.add_argument("--clip-grad", type=float, default=None, metavar="NORM",
                   help="clip the gradient norm to this (default: no clipping)")
    g.add_argument("--clip-mode", default="norm", help="gradient clipping mode")
    g = p.add_argument_group("learning rate schedule")
    g.add_argument("--sched", default="step", help=" | ".join(schedule_names()))
    g.add_argument("--lr", type=float, default=0.01, help="learning rate (not scaled by batch size)")
    g.add_argument("--lr-noise", type=float, nargs="+", default=None, metavar="PCT",
                   help="learning-rate noise on/off epoch fractions")
    g.add_argument("--lr-noise-pct", type=float, default=0.67, help="(with --lr-noise) noise limit")
    g.add_argument("--lr-noise-std", type=float, default=1.0, help="(with --lr-noise) noise std-dev")
    g.add_argument("--lr-cycle-mul", type=float, default=1.0, help="cyclic schedule length multiplier")
    g.add_argument("--lr-cycle-limit", type=int, default=1, help="cyclic schedule cycles")
    g.add_argument("--warmup-lr", type=float, default=1e-4, help="learning rate at the start of the warmup")
    g.add_argument("--min-lr", type=float, default=1e-5, help="final learning rate of cosine/linear schedules")
    g.add_argument("--epochs", type=int, default=200, help="epochs of the schedule")
    g.add_argument("--epoch-repeats", type=float, default=0.0, help="times to repeat the data set per epoch")
    g.add_argument("--start-epoch", type=int, default=None, help="not needed: --resume restores the epoch")
    g.add_argument("--benchmark-steps", type=int, default=None, help="stop each pass after this many batches")
    g.add_argument("--decay-epochs", type=float, default=30, help="step schedule: epochs between decays")
    g.add_argument("--warmup-epochs", type=float, default=3, help="epochs of linear warmup from --warmup-lr")
    g.add_argument("--cooldown-epochs", type=int, default=10,
                   help="epochs at the final rate after a cosine/linear schedule (step decay has none, as timm)")
    g.add_argument("--patience-epochs", type=int, default=10, help="(plateau schedule only; not implemented)")
    g.add_argument("--decay-rate", "--dr", type=float, default=0.1, help="step schedule: factor of each decay")
    g = p.add_argument_group("augmentation")
    g.add_argument("--no-aug", action="store_true", help="no training augmentation (resize and centre crop)")
    g.add_argument("--scale", type=float, nargs=2, default=[0.08, 1.0], help="RandomResizedCrop area range")
    g.add_argument("--ratio", type=float, nargs=2, default=[3 / 4, 4 / 3], help="RandomResizedCrop aspect ratio range")
    g.add_argument("--hflip", type=float, default=0.5, help="horizontal flip probability")
    g.add_argument("--vflip", type=float, default=0.0, help="vertical flip probability")
    g.add_argument("--color-jitter", type=float, default=0.4, help="only without --aa, as timm")
    g.add_argument("--aa", default=None, help=f"augmentation policy: {policy_names()}")
    g.add_argument("--aug-splits", type=int, default=0, help="augmentation splits")
    g.add_argument("--jsd", action="store_true", help="Jensen-Shannon divergence + CE loss")
    g.add_argument("--reprob", type=float, default=0.0, help="random erasing probability")
    g.add_argument("--remode", default="const", help="random erasing mode: const | rand | pixel")
    g.add_argument("--recount", type=int, default=1, help="random erasing count")
    g.add_argument("--resplit", action="store_true", help="(with augmentation splits only)")
    g.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0: off)")
    g.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha (0: off)")
    g.add_argument("--cutmix-minmax", type=float, nargs=2, default=None, metavar="R",
                   help="cutmix min/max box ratio; enables cutmix (default: off)")
    g.add_argument("--mixup-prob", type=float, default=1.0, help="probability of mixup or cutmix per batch")
    g.add_argument("--mixup-switch-prob", type=float, default=0.5,
                   help="with both on: probability of cutmix instead of mixup")
    g.add_argument("--mixup-mode", default="batch", help="batch | pair | elem")
    g.add_argument("--mixup-off-epoch", type=int, default=0, help="turn mixup/cutmix off from this epoch (0: never)")
    g.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    g.add_argument("--train-interpolation", default="random", help="random | bilinear | bicubic")
    g.add_argument("--drop", type=float, default=None, help="dropout before the classifier (GPUNet default 0.2)")
    g.add_argument("--drop-connect", type=float, default=None, help="deprecated spelling of --drop-path")
    g.add_argument("--drop-path", type=float, default=None, help="stochastic depth rate (GPUNet default 0.2)")
    g.add_argument("--drop-block", type=float, default=None, help="DropBlock rate")
    g = p.add_argument_group("batch norm, EMA, misc")
    g.add_argument("--bn-tf", action="store_true", help="TensorFlow BatchNorm defaults")
    g.add_argument("--bn-momentum", type=float, default=None, help="BatchNorm momentum override")
    g.add_argument("--bn-eps", type=float, default=None, help="BatchNorm epsilon override")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    g.add_argument("--dist-bn", default="", help="'' or broadcast: rank 0's BN statistics are always broadcast")
    g.add_argument("--split-bn", action="store_true", help="BatchNorm per augmentation split")
    g.add_argument("--model-ema", action="store_true",
                   help="keep an EMA of the weights; its metrics pick the best checkpoint, as timm's")
    g.add_argument("--model-ema-force-cpu", action="store_true", help="keep the EMA on the CPU")
    g.add_argument("--model-ema-decay", type=float, default=0.9998, help="EMA decay per step")
    g.add_argument("--seed", type=int, default=42, help="random seed")
    g.add_argument("--log-interval", type=int, default=50, help="batches between log lines")
    g.add_argument("--recovery-interval", type=int, default=0, help="batches between recovery checkpoints")
    g.add_argument("--checkpoint-hist", type=int, default=10, help="best per-epoch checkpoints kept")
    g.add_argument("-j", "--workers", type=int, default=2, help="data loading workers (0: in process)")
    g.add_argument("--save-images", action="store_true", help="save input batches as images")
    g.add_argument("--amp", action="store_true", help="mixed precision (torch.amp)")
    g.add_argument("--apex-amp", action="store_true", help="NVIDIA apex AMP")
    g.add_argument("--native-amp", action="store_true", help="same as --amp")
    g.add_argument("--amp-dtype", default="fp16", choices=("fp16", "bf16"),
                   help="[ext] the --amp type (bf16: no loss scaling)")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    g.add_argument("--pin-mem", action="store_true", help="(always on with a GPU)")
    g.add_argument("--no-prefetcher", action="store_true", help="(batches are always normalised on the device)")
    g.add_argument("--output", default="", metavar="DIR", help="output root (default: ./output/train)")
    g.add_argument("--experiment", default="", help="run folder name (default: <date>-<model>-<size>)")
    g.add_argument("--eval-metric", default="top1", help="metric that picks the best checkpoint")
    g.add_argument("--tta", type=int, default=0, help="test-time augmentation factor")
    g.add_argument("--local_rank", "--local-rank", type=int, default=0, help="(read from the environment)")
    g.add_argument("--use-multi-epochs-loader", action="store_true", help="(workers persist across epochs anyway)")
    g.add_argument("--torchscript", action="store_true", help="TorchScript the model")
    g.add_argument("--torchcompile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the model for training (timm's flag; only the inductor backend)")
    g.add_argument("--torchcompile-mode", default=None, choices=COMPILE_MODES,
                   help="torch.compile mode with --torchcompile (timm's flag; default: default; reduce-overhead: "
                        "forward and backward as CUDA graphs)")
    g.add_argument("--log-wandb", action="store_true", help="log to Weights & Biases")
    g = p.add_argument_group("distillation")
    # timm's str2bool flags, as upstream's: bare means true, or a value (upstream's D1/D2/P0/P1 recipes say
    # `--test-teacher False`, GPUNet-0/1/2's `--enable-distill False`).
    p.add_bool_flag("--enable-distill", group=g, default=False, metavar="BOOL",
                    help="train with a teacher (bare: true; or true/false, yes/no, 1/0)")
    p.add_bool_flag("--test-teacher", group=g, default=False, metavar="BOOL",
                    help="validate the teacher before training (bare: true; or true/false, yes/no, 1/0)")
    g.add_argument("--teacher", default="", help="registered or timm model name of the teacher")
    g.add_argument("--teacher-checkpoint", default="", metavar="PATH", help="the teacher's weights (required)")
    g.add_argument("--teacher-img-size", type=int, default=224, help="resolution the teacher sees")
    g.add_argument("--kd-temperature", type=float, default=1.0, help="[ext] softmax temperature of the KD term")
    g.add_argument("--kd-weight", type=float, default=1.0, help="[ext] weight of the KD term")
    g = p.add_argument_group("extensions")
    g.add_argument("--cpu", action="store_true", help="[ext] train on the CPU even if a GPU is present")
    add_data_backend_argument(g, extension=True)
    add_stream_priority_argument(g)
    add_deterministic_argument(g)
    add_compile_option_argument(g, compile_flag="--torchcompile")
    add_fused_optimizer_argument(g)
    g.add_argument("--tensorboard", default=None, metavar="DIR", help="[ext] TensorBoard scalars")
    g.add_argument("--no-progress", action="store_false", dest="progress", help="[ext] no progress bar")
    g.add_argument("--skip-bad-images", action="store_true", help="[ext] skip unreadable images")
    g.add_argument("--prof", type=int, default=-1, metavar="N",
                   help="[ext] stop every train and val pass after N batches (-1: never)")
    g.add_argument("--dry-run", action="store_true", help="[ext] print the resolved configuration and exit")
    add_reliability_arguments(p)
    # --help says what using them says (_refuse_unsupported).
    reasons = {dest: why for dest, _, why in UNSUPPORTED}
    for action in p._actions:
        if action.dest in reasons:
            action.help = f"{action.help} (not supported: {reasons[action.dest]})"
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """timm's two-step parse: a YAML file given with -c provides defaults, the command line overrides them."""
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    if known.config:
        import yaml

        from common.config_presets import apply_presets

        path = Path(known.config)
        if not path.is_file():
            raise UserError(f"--config file not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise UserError(f"{path} must hold a mapping of flag names to values")
        apply_presets(parser, {k.replace("-", "_"): v for k, v in values.items()}, str(path))
    return parser.parse_args(argv)


def _refuse_unsupported(args: argparse.Namespace) -> None:
    if args.torchcompile not in (None, "inductor"):
        raise UserError(f"--torchcompile {args.torchcompile} is not supported; only the inductor backend")
    for dest, default, why in UNSUPPORTED:
        if getattr(args, dest) != default:
            raise UserError(f"--{dest.replace('_', '-')} is not supported: {why}")
    if args.sched not in SCHEDULES:  # plateau among them: timm offers it, we do not
        *others, last = schedule_names()
        raise UserError(f"--sched {args.sched} is not supported; use {', '.join(others)} or {last}")
    if args.dist_bn not in ("", "broadcast"):
        raise UserError("--dist-bn reduce is not supported; rank 0's BatchNorm statistics are broadcast")


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    from image_classification.models import get_model_info

    _refuse_unsupported(args)
    info = get_model_info(args.model)
    if args.opt.lower() not in OPTIMIZERS:
        raise UserError(f"--opt {args.opt} is not supported; choose from {', '.join(OPTIMIZERS)}")
    optimizer, nesterov = OPTIMIZERS[args.opt.lower()]
    if args.input_size and args.input_size[1] != args.input_size[2]:
        raise UserError(f"--input-size must be square, got {args.input_size}")
    size = args.img_size or (args.input_size[-1] if args.input_size else None) or info.input_size
    drop_path = args.drop_path if args.drop_path is not None else args.drop_connect
    model_kwargs = {}
    if args.drop is not None:
        model_kwargs["dropout"] = args.drop
    if drop_path is not None:
        model_kwargs["drop_path_rate"] = drop_path
    if args.model_config:
        if info.family != "gpunet":
            raise UserError("--model-config describes a GPUNet; pick a gpunet --model with it")
        model_kwargs["model_config"] = args.model_config
    distill = args.enable_distill
    if distill and not args.teacher:
        raise UserError("--enable-distill needs --teacher (a registered or timm model) and --teacher-checkpoint")
    output = Path(args.output or "./output/train")
    experiment = args.experiment or f"{time.strftime('%Y%m%d-%H%M%S')}-{info.name}-{size}"
    workspace = output / experiment
    prof = args.prof if args.prof > 0 else (args.benchmark_steps or -1)
    cfg = TrainingConfig(
        arch=info.name, num_classes=args.num_classes, model_kwargs=model_kwargs,
        pretrained=args.pretrained, pretrained_from_file=args.initial_checkpoint or None,
        data=args.data_dir, train_split=args.train_split, val_split=args.val_split, image_size=size,
        crop_pct=args.crop_pct, interpolation=args.train_interpolation,
        val_interpolation=args.interpolation or info.interpolation, mean=tuple(args.mean) if args.mean else None,
        std=tuple(args.std) if args.std else None, augmentation=args.aa, crop_scale=tuple(args.scale),
        crop_ratio=tuple(args.ratio), hflip=args.hflip, vflip=args.vflip, no_aug=args.no_aug,
        color_jitter=args.color_jitter or 0.0, random_erasing=args.reprob, random_erasing_mode=args.remode,
        random_erasing_count=args.recount, workers=args.workers, skip_bad_images=args.skip_bad_images,
        batch_size=args.batch_size, val_batch_size=args.batch_size * args.validation_batch_size_multiplier,
        # timm adds the cooldown only to schedules that end (cosine; our linear too), not to step decay.
        epochs=args.epochs + (args.cooldown_epochs if SCHEDULES[args.sched].ends else 0),
        lr_schedule_epochs=args.epochs,
        optimizer=optimizer, nesterov=nesterov, lr=args.lr, lr_schedule=args.sched, lr_decay_epochs=args.decay_epochs,
        lr_decay_rate=args.decay_rate, end_lr=args.min_lr, warmup=args.warmup_epochs, warmup_lr=args.warmup_lr,
        momentum=args.momentum, weight_decay=args.weight_decay, clip_grad=args.clip_grad,
        label_smoothing=args.smoothing, mixup=args.mixup, cutmix=args.cutmix,
        cutmix_minmax=tuple(args.cutmix_minmax) if args.cutmix_minmax else None, mixup_prob=args.mixup_prob,
        mixup_switch_prob=args.mixup_switch_prob, mixup_mode=args.mixup_mode, mixup_off_epoch=args.mixup_off_epoch,
        use_ema=args.model_ema_decay if args.model_ema else None, best_from_ema=True,
        teacher=args.teacher if distill else None, teacher_checkpoint=args.teacher_checkpoint or None,
        teacher_img_size=args.teacher_img_size, kd_temperature=args.kd_temperature, kd_weight=args.kd_weight,
        test_teacher=args.test_teacher and distill,
        precision=args.amp_dtype if (args.amp or args.native_amp) else "fp32",
        memory_format="nhwc" if args.channels_last else "nchw", device="cpu" if args.cpu else "auto",
        seed=args.seed, print_freq=args.log_interval, prof=prof, resume=args.resume or None,
        compile=args.torchcompile is not None, compile_mode=args.torchcompile_mode or "default",
        data_backend=args.data_backend, stream_priority=args.stream_priority, deterministic=args.deterministic,
        compile_options=dict(args.compile_options), fused_optimizer=args.fused_optimizer,
        resume_optimizer=not args.no_resume_opt, sync_bn=args.sync_bn, workspace=str(workspace),
        raport_file=args.dllogger_name or "log.json", tensorboard=args.tensorboard, progress=args.progress,
        output_style="timm", checkpoint_hist=args.checkpoint_hist,
        cli_args={k: v for k, v in vars(args).items() if k != "dry_run"}, flag_names=dict(TIMM_FLAGS),
        **reliability_config(args),
    )
    if args.opt_eps is not None:
        cfg.rmsprop_eps = args.opt_eps
    if args.opt_betas:
        cfg.adam_betas = tuple(args.opt_betas)
    return cfg.validate()


def run(args: argparse.Namespace) -> dict | None:
    import json

    cfg = config_from_args(args)
    if args.dry_run:
        print(json.dumps(cfg.to_dict(), indent=2, default=str))
        return None
    from image_classification.quantization.state import check_fp32_run, restore_quantizers
    from image_classification.training.trainer import print_summary, train

    summary = train(check_fp32_run(cfg, "train.py"), restore_quantizers=restore_quantizers)
    print_summary(summary)
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    # Imported after parsing: the trainer needs torch, and --help (or a bad flag) should not wait for it.
    from image_classification.training.trainer import exit_status

    return exit_status(run(args))


if __name__ == "__main__":
    run_cli(main)
