"""The one config object every CLI dialect (ConvNets' main.py flags, timm's train.py flags) fills, in sections."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.cli_errors import UserError
from image_classification.data.choices import reads_folder
from image_classification.data.config import DataConfig, flag_for

from .schedule import LR_SCHEDULES

OPTIMIZERS = ("sgd", "rmsprop", "rmsproptf", "adamw", "lamb")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
STREAM_PRIORITIES = ("high", "normal")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SIGUSR1_ACTIONS = ("stop", "checkpoint")
TIMM_LATEST = "last.pth.tar"  # timm's name for the latest checkpoint (ConvNets: --checkpoint-filename)

# Messages name the flag the user typed: each CLI dialect gives its spelling of the settings' flags
# (TrainingConfig.flag_names: cli/convnets.CONVNETS_FLAGS, gpunet/train.TIMM_FLAGS), where it is not "--" and the
# setting's name with dashes (a model keyword's too), or words where the dialect has no flag for it. A config built
# without a dialect spells the model's settings as every upstream tool does (main.py, classify.py, model2onnx.py).
MODEL_FLAGS = {
    "num_classes": "--num_classes", "dropout": "--dropout", "survival_prob": "--survival_prob",
    "bn_momentum": "--bn_momentum", "bn_epsilon": "--bn_epsilon", "conv_init": "--conv_init",
    "drop_path_rate": "--drop_path_rate", "model_config": "--model_config",
}

# Model keywords the CLIs set, and the range each must fall in: (low, high, low included, high included).
MODEL_KWARG_RANGES = {"dropout": (0.0, 1.0, True, False), "drop_path_rate": (0.0, 1.0, True, False),
                      "survival_prob": (0.0, 1.0, False, True), "bn_momentum": (0.0, 1.0, True, True)}

# The narrowest first convolution of the registered models (GPUNet-1's; EfficientNet's has 32): the floor of the
# memory estimate behind the image-size check.
STEM_CHANNELS_AT_LEAST = 24


def total_memory_bytes() -> int | None:
    """The machine's physical memory (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


@dataclass
class ModelConfig:
    arch: str = "efficientnet-b0"
    num_classes: int | None = None  # None: from the training folder (1000 for synthetic data)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained_from_file: str | None = None
    pretrained: bool = False
    pretrained_weights: str = "auto"  # auto | ema | raw
    fresh_classifier: bool = False
    sync_bn: bool = False  # SyncBatchNorm under DDP: the model's BN layers share their batch statistics


@dataclass
class OptimConfig:
    """What each step minimises and how: the optimizer, the loss and its regularisers, the EMA, distillation."""
    optimizer_batch_size: int = -1
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    bn_weight_decay: bool = False
    rmsprop_alpha: float = 0.9
    rmsprop_eps: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float | None = None
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    cutmix_minmax: tuple[float, float] | None = None
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    mixup_off_epoch: int = 0  # from this epoch on, no mixing (0: never off)
    use_ema: float | None = None
    # knowledge distillation
    teacher: str | None = None
    teacher_checkpoint: str | None = None
    teacher_img_size: int | None = None  # None: the teacher's native resolution
    kd_temperature: float = 1.0
    kd_weight: float = 1.0
    test_teacher: bool = False


@dataclass
class ScheduleConfig:
    """How long the run is and how the learning rate moves through it."""
    epochs: int = 90
    run_epochs: int = -1
    lr_schedule: str = "step"
    lr_steps: tuple[float, ...] = (30, 60, 80)
    lr_decay_rate: float = 0.1
    lr_decay_epochs: float | None = None  # step schedule: decay every N epochs (timm) instead of at lr_steps
    end_lr: float = 0.0
    warmup: float = 0.0
    warmup_lr: float = 0.0
    lr_schedule_epochs: float | None = None  # length of the decay (None: --epochs); later epochs stay at the end
    early_stopping_patience: int = -1


@dataclass
class RunConfig:
    """How the run executes: numerics and speed, what it does (train, evaluate, resume), and how it meets
    signals, a used workspace and failures."""
    precision: str = "fp32"
    static_loss_scale: float = 128.0
    memory_format: str = "nchw"
    device: str = "auto"  # auto | cpu | cuda
    cudnn_benchmark: bool = True
    deterministic: bool = False  # bit-reproducible GPU runs, at some speed cost
    # The training step: torch.compile of the model, and fused (CUDA) / foreach optimizer kernels.
    compile: bool = False
    compile_mode: str = "default"  # torch.compile mode; reduce-overhead also replays forward/backward as CUDA graphs
    # TorchInductor options for --compile, over step.TRAINING_INDUCTOR_OPTIONS
    compile_options: dict[str, Any] = field(default_factory=dict)
    fused_optimizer: str = "auto"  # auto (fused on CUDA where the optimizer has it, else foreach) | on | off
    # high: the run's GPU work goes to a high-priority CUDA stream, ahead of a GPU data pipeline's kernels | normal
    stream_priority: str = "high"
    # --evaluate on a GPU runs the inference fast path (BN folded, channels_last, compiled, CUDA graph) unless off.
    fast_inference: bool = True
    inference_compile: bool = True
    seed: int | None = None
    prof: int = -1
    evaluate: bool = False
    training_only: bool = False
    resume: str | None = None
    resume_optimizer: bool = True
    gpu_affinity: str = "none"
    sigusr1: str = "stop"  # SIGUSR1, SLURM's early warning: stop (save and exit, like SIGTERM) | checkpoint (go on)
    overwrite: bool = False  # start afresh in a workspace that holds a checkpoint (its files are replaced)
    max_nonfinite_steps: int = 20  # consecutive steps with a non-finite loss that end the run as diverged
    dist_timeout: float = 600.0  # seconds a collective waits for the other ranks before the run fails


@dataclass
class OutputConfig:
    """What the run writes: log lines, checkpoints, the report."""
    print_freq: int = 10
    save_checkpoints: bool = True
    checkpoint_filename: str = "checkpoint.pth.tar"
    gather_checkpoints: int = 0
    workspace: str = "./"
    raport_file: str = "experiment_raport.json"
    tensorboard: str | None = None
    progress: bool = True
    topk: int = 5
    # "convnets": checkpoint_XXXX/checkpoint.pth.tar/model_best.pth.tar as upstream ConvNets writes them;
    # "timm": last.pth.tar, model_best.pth.tar, checkpoint-<epoch>.pth.tar (best --checkpoint-hist by metric),
    # summary.csv and args.yaml, as GPUNet's timm-based train.py writes them.
    output_style: str = "convnets"
    checkpoint_hist: int = 10
    best_from_ema: bool = False  # timm's habit: with EMA on, EMA accuracy picks the best checkpoint
    cli_args: dict[str, Any] | None = None  # the command line as parsed, written to args.yaml (timm style)


@dataclass
class Sections:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


SECTION_NAMES = tuple(f.name for f in dataclasses.fields(Sections))
# Each setting's section, by the flat name that checkpoints, reports, presets and the CLIs know it by.
SECTION_OF = {setting.name: section.name for section in dataclasses.fields(Sections)
              for setting in dataclasses.fields(section.default_factory)}


@dataclass(init=False)
class TrainingConfig:
    """The run's settings in sections (model, data, optim, schedule, run, output). Every setting keeps its flat
    name: TrainingConfig(lr=0.1), cfg.lr and to_dict() speak it, as the CLIs, the presets, the saved checkpoints and
    the reports always have; a part that needs one section takes it (build_data takes sections.data)."""
    sections: Sections
    # How the CLI dialect in use spells each flag (see MODEL_FLAGS); not a setting, so not in to_dict().
    flag_names: dict[str, str] = field(compare=False, repr=False)

    def __init__(self, sections: Sections | None = None, flag_names: dict[str, str] | None = None, **values: Any):
        unknown = sorted(set(values) - set(SECTION_OF))
        if unknown:
            raise TypeError(f"TrainingConfig got unexpected keyword argument(s): {', '.join(unknown)}")
        base = sections or Sections()
        # Each section is a copy, so a config made from another's sections (dataclasses.replace) never shares them.
        self.sections = Sections(**{
            name: dataclasses.replace(getattr(base, name), **{k: v for k, v in values.items() if SECTION_OF[k] == name})
            for name in SECTION_NAMES})
        self.flag_names = dict(MODEL_FLAGS) if flag_names is None else flag_names

    def flag(self, name: str) -> str:
        """The flag that sets config value (or model keyword) `name`, spelled as the user's dialect spells it."""
        return self.flag_names[name] if name in self.flag_names else flag_for(name)

    def validate(self) -> TrainingConfig:
        """Check values no parser can check; one clear line per problem, naming the flag as the user spelled it."""
        def need(cond: bool, message: str):
            if not cond:
                raise UserError(message)

        flag = self.flag
        need(self.optimizer in OPTIMIZERS,
             f"{flag('optimizer')} must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        need(self.lr_schedule in LR_SCHEDULES,
             f"{flag('lr_schedule')} must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        need(self.compile_mode in COMPILE_MODES,
             f"{flag('compile_mode')} must be default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs, "
             f"got {self.compile_mode!r}")
        if self.compile_options:
            from image_classification.runtime.compile_options import unknown_inductor_options

            unknown = unknown_inductor_options(self.compile_options)
            need(not unknown, f"{flag('compile_options')}: unknown TorchInductor option(s): {', '.join(unknown)}")
        need(self.fused_optimizer in ("auto", "on", "off"),
             f"{flag('fused_optimizer')} must be auto, on or off, got {self.fused_optimizer!r}")
        need(self.stream_priority in STREAM_PRIORITIES,
             f"{flag('stream_priority')} must be {' or '.join(STREAM_PRIORITIES)}, got {self.stream_priority!r}")
        need(self.memory_format in ("nchw", "nhwc"),
             f"{flag('memory_format')} must be nchw or nhwc, got {self.memory_format!r}")
        need(self.batch_size >= 1, f"{flag('batch_size')} must be at least 1, got {self.batch_size}")
        need(self.epochs >= 1 or self.evaluate, f"{flag('epochs')} must be at least 1, got {self.epochs}")
        need(math.isfinite(self.lr) and self.lr >= 0, f"{flag('lr')} must be a finite number >= 0, got {self.lr}")
        need(0.0 <= self.momentum < 1.0, f"{flag('momentum')} must be in [0, 1), got {self.momentum}")
        need(self.clip_grad is None or (math.isfinite(self.clip_grad) and self.clip_grad >= 0),
             f"{flag('clip_grad')} takes a gradient norm >= 0 (0: no clipping), got {self.clip_grad}")
        need(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"{flag('weight_decay')} must be a finite number >= 0, got {self.weight_decay}")
        need(self.run_epochs == -1 or self.run_epochs >= 1,
             f"{flag('run_epochs')} takes -1 (the whole schedule) or at least 1 epoch, got {self.run_epochs}")
        need(self.warmup >= 0, f"{flag('warmup')} must not be negative, got {self.warmup}")
        need(self.warmup < self.epochs or self.evaluate or self.epochs <= 0,
             f"{flag('warmup')} ({self.warmup}) must be shorter than {flag('epochs')} ({self.epochs})")
        need(self.workers >= 0, f"{flag('workers')} must not be negative, got {self.workers}")
        need(self.print_freq >= 1, f"{flag('print_freq')} must be at least 1, got {self.print_freq}")
        need(0.0 <= self.label_smoothing < 1.0,
             f"{flag('label_smoothing')} must be in [0, 1), got {self.label_smoothing}")
        for name in ("mixup", "cutmix"):
            alpha = getattr(self, name)
            need(math.isfinite(alpha) and alpha >= 0, f"{flag(name)} takes an alpha >= 0 (0: off), got {alpha}")
        need(self.use_ema is None or 0.0 < self.use_ema < 1.0,
             f"{flag('use_ema')} takes a decay in (0, 1), got {self.use_ema}")
        need(self.topk >= 1, f"{flag('topk')} must be at least 1, got {self.topk}")
        need(self.num_classes is None or self.num_classes >= 1,
             f"{flag('num_classes')} must be at least 1, got {self.num_classes}")
        need(self.gather_checkpoints >= -1,
             f"{flag('gather_checkpoints')} takes -1 (keep all), 0 or N, got {self.gather_checkpoints}")
        need(self.image_size is None or self.image_size >= 8,
             f"{flag('image_size')} must be at least 8, got {self.image_size}")
        self._refuse_sizes_no_memory_holds(need)
        need(not (self.pretrained and self.pretrained_from_file),
             f"{flag('pretrained')} and {flag('pretrained_from_file')} exclude each other")
        need(not (self.evaluate and self.training_only),
             f"{flag('evaluate')} and {flag('training_only')} exclude each other")
        need(self.mixup_mode in ("batch", "pair", "elem"),
             f"{flag('mixup_mode')} must be batch, pair or elem, got {self.mixup_mode!r}")
        need(0.0 <= self.vflip <= 1.0, f"{flag('vflip')} is a probability in [0, 1], got {self.vflip}")
        need(self.val_batch_size is None or self.val_batch_size >= 1,
             f"{flag('val_batch_size')} must be at least 1, got {self.val_batch_size}")
        need(self.kd_temperature > 0, f"{flag('kd_temperature')} must be positive, got {self.kd_temperature}")
        need(self.kd_weight >= 0, f"{flag('kd_weight')} must not be negative, got {self.kd_weight}")
        need(0.0 <= self.random_erasing <= 1.0,
             f"{flag('random_erasing')} is a probability in [0, 1], got {self.random_erasing}")
        need(self.random_erasing_mode in ("const", "rand", "pixel"),
             f"{flag('random_erasing_mode')} must be const, rand or pixel, got {self.random_erasing_mode!r}")
        need(self.output_style in ("convnets", "timm"),
             f"output style must be convnets or timm, got {self.output_style!r}")
        need(self.checkpoint_hist >= 0,
             f"{flag('checkpoint_hist')} must not be negative, got {self.checkpoint_hist}")
        lo, hi = self.crop_scale
        need(0.0 < lo <= hi <= 1.0, f"{flag('crop_scale')} needs 0 < MIN <= MAX <= 1, got {lo} {hi}")
        need(self.crop_pct is None or 0.0 < self.crop_pct <= 1.0,
             f"{flag('crop_pct')} is the fraction of the resized image kept, in (0, 1], got {self.crop_pct}")
        self._validate_model_kwargs(need)
        need(0.0 <= self.hflip <= 1.0, f"{flag('hflip')} is a probability in [0, 1], got {self.hflip}")
        need(0.0 < self.crop_ratio[0] <= self.crop_ratio[1],
             f"{flag('crop_ratio')} must be positive and ordered, got {tuple(self.crop_ratio)}")
        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}")
        need(self.sigusr1 in SIGUSR1_ACTIONS, f"--sigusr1 must be {' or '.join(SIGUSR1_ACTIONS)}, got {self.sigusr1!r}")
        need(self.max_nonfinite_steps >= 1,
             f"--max-nonfinite-steps must be at least 1, got {self.max_nonfinite_steps}")
        need(self.dist_timeout > 0, f"--dist-timeout must be a positive number of seconds, got {self.dist_timeout}")
        need(not reads_folder(self.data_backend) or bool(self.data),
             "no data path given: pass the data folder (with train/ and val/) or use --data-backend synthetic")
        if self.resume == "auto":
            # A requeued job's command line never changes: continue the workspace's run if there is one.
            newest = self.newest_checkpoint()
            self.resume = str(newest) if newest else None
        return self

    def latest_checkpoint(self) -> Path:
        """The workspace's latest checkpoint in this run's layout."""
        return Path(self.workspace) / (TIMM_LATEST if self.output_style == "timm" else self.checkpoint_filename)

    def newest_checkpoint(self) -> Path | None:
        """What `--resume auto` continues from: the latest checkpoint, or the best one where it is newer (a run
        killed between the two writes of an epoch's end has written the best, which comes first, and not the
        latest). Both hold the whole training state."""
        candidates = [p for p in (self.latest_checkpoint(), Path(self.workspace) / "model_best.pth.tar") if p.is_file()]
        return max(candidates, key=lambda p: p.stat().st_mtime_ns, default=None)

    def _refuse_sizes_no_memory_holds(self, need) -> None:
        """An absurd resolution (100000 px) ran the machine out of memory instead of failing. The estimate is a
        floor, so it never refuses a size that could run: one batch's output of the first convolution, which every
        model here has (stride 2, at least 24 channels, float32), against the machine's whole memory."""
        size = max(self.image_size or 0, self.val_image_size or 0)
        total = total_memory_bytes()
        if not size or total is None:
            return
        batch = max(self.batch_size, self.val_batch_size or 0)
        half = math.ceil(size / 2)
        floor = batch * STEM_CHANNELS_AT_LEAST * half * half * 4
        need(floor <= total,
             f"{self.flag('image_size')} {size} cannot fit: the first convolution's output alone, for one batch of "
             f"{batch}, is {floor / 2**30:,.1f} GiB ({batch} x {STEM_CHANNELS_AT_LEAST} channels x {half}x{half} px "
             f"x 4 bytes), more than this machine's {total / 2**30:,.1f} GiB of memory: lower "
             f"{self.flag('image_size')} or {self.flag('batch_size')}")

    def _validate_model_kwargs(self, need) -> None:
        for name, (low, high, low_in, high_in) in MODEL_KWARG_RANGES.items():
            value = self.model_kwargs.get(name)
            if value is None:
                continue
            above = value >= low if low_in else value > low
            below = value <= high if high_in else value < high
            interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
            need(above and below, f"{self.flag(name)} must be in {interval}, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """The settings by their flat names, as checkpoints ("config") and reports record them."""
        return {name: value for section in SECTION_NAMES
                for name, value in dataclasses.asdict(getattr(self.sections, section)).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        return cls(**{k: v for k, v in values.items() if k in SECTION_OF})


def _flat_setting(section: str, name: str) -> property:
    def read(self):
        return getattr(getattr(self.sections, section), name)

    def write(self, value):
        setattr(getattr(self.sections, section), name, value)

    return property(read, write, doc=f"sections.{section}.{name}")


for _name, _section in SECTION_OF.items():
    if hasattr(TrainingConfig, _name):
        raise TypeError(f"setting {_name!r} would hide TrainingConfig.{_name}: rename the setting")
    setattr(TrainingConfig, _name, _flat_setting(_section, _name))
