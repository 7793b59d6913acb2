"""The one training loop every model package uses. Read it top to bottom: setup, resume, epochs, checkpoints."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from common.atomic_files import atomic_write, remove_stale_temporaries
from common.cli_errors import EXIT_RESUMABLE, UserError
from common.dllogger import JSONStreamBackend, StdOutBackend, TensorBoardBackend, Verbosity
from common.training_log import (
    ACC_METER,
    LOSS_METER,
    LR_METER,
    PERF_METER,
    TrainingLogger,
)
from common.workspace_lock import WorkspaceLock
from image_classification.data.batch_augmentations import build_batch_augmentations
from image_classification.inference.evaluate import evaluate
from image_classification.models import create_model, get_model_info
from image_classification.models.checkpoint import (
    QuantizerRestorer,
    load_state_dict_checked,
    read_checkpoint,
    strip_prefixes,
)

from ..runtime import distributed
from .checkpointing import CheckpointWriter, set_rng_state
from .config import TrainingConfig
from .distill import Resized, build_teacher
from .divergence import DivergenceWatch, TrainingDiverged, weights_are_finite
from .ema import ModelEma
from .losses import build_train_loss
from .metric_window import MetricWindow
from .run_control import StopSignals, agree
from .run_data import build_run_data
from .schedule import LRSchedule
from .step import TrainingStep

# Under DDP every rank must agree to stop (or save) at the same step; agreeing costs a collective that waits for the
# GPU, so ranks ask only this often. A scheduler's grace period (SLURM's KillWait, torchrun's 30 s) covers 20 steps.
STOP_CHECK_EVERY = 20


@contextlib.contextmanager
def compute_stream(device: torch.device, priority: str):
    """Runs the block on a CUDA stream of the highest priority (priority "high" on a GPU), else as it is.

    A GPU data pipeline (DALI's mixed decoder and resize, nvJPEG) launches its kernels on its own normal-priority
    stream. At equal priority they take SMs from the training step as they come; with the step's stream ahead, the
    scheduler gives the step the SMs it asks for and the pipeline's kernels fill what it leaves idle (EfficientNet's
    depthwise and small late-stage kernels leave plenty). Measured on an H100, B0 at batch 256, compiled with CUDA
    graphs, dali-gpu with 15 threads: 6,104 -> 6,560 images/s; with 8 threads and data.dali.HW_DECODER_LOAD at 0.5:
    6,796 -> 7,160 / 7,039; synthetic data 8,378 against 8,369, i.e. no cost (benchmarks/results/2026-11-24-h100/run6).
    Everything of the run goes through the one stream, so the only cross-stream points are its two ends."""
    if device.type != "cuda" or priority == "normal":
        yield None
        return
    outer = torch.cuda.current_stream(device)
    stream = torch.cuda.Stream(device, priority=-100)  # out of range maps to the device's highest
    stream.wait_stream(outer)  # the model, optimizer and resumed state were written on the outer stream
    try:
        with torch.cuda.stream(stream):
            yield stream
    finally:
        outer.wait_stream(stream)


def _memory_format(cfg) -> torch.memory_format:
    return torch.channels_last if cfg.memory_format == "nhwc" else torch.contiguous_format


def _set_numerics(cfg, device: torch.device) -> None:
    # TF32 is a choice, not an accident of PyTorch's defaults (upstream's "TF32" preset set nothing).
    tf32 = cfg.precision in ("tf32", "fp16", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark and device.type == "cuda" and not cfg.deterministic
    if cfg.deterministic:
        # cuBLAS needs a fixed workspace for reproducible matmuls; set before the first cuBLAS call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _write_json_atomic(data: dict, path: Path) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, default=str)


class Trainer:
    def __init__(self, cfg: TrainingConfig, *, restore_quantizers: QuantizerRestorer | None = None):
        """`restore_quantizers` (quantization.state's) lets the starting weights and the teacher be INT8-quantized
        checkpoints; without it they are refused in one line."""
        self.cfg = cfg.validate()
        self.dist = distributed.init_distributed(cfg.device, cfg.dist_timeout)
        self.device = self.dist.device
        self.workspace = Path(cfg.workspace)
        _set_numerics(cfg, self.device)
        if cfg.precision == "fp16" and self.device.type == "cpu":
            raise UserError("fp16 AMP needs a GPU; on the CPU use bf16 (--amp-dtype bf16) or FP32")
        if cfg.seed is not None:
            _seed(cfg.seed + self.dist.rank)

        self.info = get_model_info(cfg.arch)
        self.image_size = cfg.image_size or self.info.input_size
        self.val_image_size = cfg.val_image_size or self.image_size
        self.crop_pct = cfg.crop_pct or self.info.crop_pct
        self.mean = tuple(cfg.mean or self.info.mean)
        self.std = tuple(cfg.std or self.info.std)
        distilling = bool(cfg.teacher) and not cfg.evaluate
        self.teacher_size = (cfg.teacher_img_size or self.image_size) if distilling else self.image_size
        # One loader at the larger of the two resolutions; each network gets the batch resized on the device.
        self.loader_size = max(self.image_size, self.teacher_size)
        self.data = build_run_data(
            cfg, image_size=self.loader_size, val_image_size=self.val_image_size, crop_pct=self.crop_pct,
            mean=self.mean, std=self.std, device=self.device, rank=self.dist.rank,
            world_size=self.dist.world_size, need_train=not cfg.evaluate, need_val=not cfg.training_only,
        )
        self.num_classes = self.data.num_classes

        pretrained = cfg.pretrained_from_file or (True if cfg.pretrained else None)
        self.model = create_model(
            cfg.arch, pretrained=pretrained, num_classes=self.num_classes, fresh_classifier=cfg.fresh_classifier,
            weights=cfg.pretrained_weights, restore_quantizers=restore_quantizers, **cfg.model_kwargs,
        ).to(self.device, memory_format=_memory_format(cfg))

        self.iters_per_epoch = 0
        self.global_batch = cfg.batch_size * self.dist.world_size
        self.accum = 1
        self.step: TrainingStep | None = None
        self.teacher = None
        self.batch_augmentations = []
        if distilling:
            # Never wrapped in DDP: it is not trained, so there is nothing to synchronise.
            self.teacher = build_teacher(cfg.teacher, cfg.teacher_checkpoint, self.num_classes,
                                         restore_quantizers=restore_quantizers).to(
                self.device, memory_format=_memory_format(cfg))
        if not cfg.evaluate:
            self.iters_per_epoch = len(self.data.train)
            sampler = self.data.train.sampler
            # The epoch's length in samples, the unit of the schedule and of an interrupted epoch's position.
            self.epoch_samples = sampler.size if sampler is not None else self.iters_per_epoch * self.global_batch
            if 0 < cfg.prof < self.iters_per_epoch:
                self.iters_per_epoch = cfg.prof
                self.epoch_samples = cfg.prof * self.global_batch
            self.accum = self._accumulation_steps()
            self.schedule = LRSchedule(cfg)
            self.batch_augmentations = build_batch_augmentations(cfg, self.num_classes, self.device)
            soft_targets = any(op.soft_targets for op in self.batch_augmentations)
            self.step = TrainingStep(self.model, cfg, self.dist, accum=self.accum,
                                     train_loss=build_train_loss(cfg, soft_targets), teacher=self.teacher,
                                     image_size=self.image_size, teacher_size=self.teacher_size)
            self.model = self.step.model  # SyncBatchNorm, when asked, replaced its BatchNorm layers
        # After the step's DDP wrapper broadcast rank 0's weights, so every rank averages the same weights.
        self.ema = ModelEma(self.model, cfg.use_ema) if cfg.use_ema else None
        self.checkpoints = CheckpointWriter.for_config(cfg, self.dist.is_main)

        self.divergence = DivergenceWatch(self.device, cfg.max_nonfinite_steps)

        self.start_epoch, self.start_samples, self.global_step = 0, 0, 0
        self.best_top1, self.best_epoch, self.epochs_since_best = 0.0, -1, 0
        self._last_metric: float | None = None
        self._last_ema: dict | None = None
        self.resume_path = cfg.resume  # validate() resolved --resume auto
        self.lock: WorkspaceLock | None = None
        self._claim_workspace()
        try:
            if self.resume_path:
                self._resume(self.resume_path)
            self.logger = self._make_logger()
        except BaseException:
            self._release_workspace(failed=True)
            raise

    # ------------------------------------------------------------------ the workspace
    def _claim_workspace(self) -> None:
        """The main rank locks the workspace, refuses one that holds another run's checkpoints and removes the
        temporaries of writes a killed run left. Every rank learns whether that worked, so none waits for a rank
        that failed."""
        error = None
        if self.dist.is_main:
            self._created_workspace = not self.workspace.exists()
            try:
                self.lock = WorkspaceLock(self.workspace)
                self.lock.acquire()
                self._check_previous_run()
            except (UserError, OSError) as exc:
                self._release_workspace(failed=True)
                error = exc
        if distributed.any_rank(error is not None):
            if isinstance(error, BaseException):
                raise error
            raise UserError("rank 0 could not start in the workspace (its error says why)")
        if self.dist.is_main:
            stale = remove_stale_temporaries(self.workspace)
            if stale:
                print(f"=> removed {len(stale)} unfinished temporary file(s) an interrupted write left in "
                      f"{self.workspace}", flush=True)

    def _check_previous_run(self) -> None:
        cfg = self.cfg
        previous = self.checkpoints.existing_files()
        report = self.workspace / cfg.raport_file
        if not previous or self.resume_path:
            return
        # A run that writes checkpoints, or this report, would replace the previous run's.
        if not ((cfg.save_checkpoints and not cfg.evaluate) or report.exists()):
            return
        if not cfg.overwrite:
            names = ", ".join(p.name for p in previous[:3]) + (", ..." if len(previous) > 3 else "")
            raise UserError(f"{self.workspace} holds another run's checkpoints ({names}): continue it with --resume "
                            f"{self.checkpoints.latest_path} (or --resume auto), choose another workspace, or pass "
                            f"--overwrite to replace it")
        removed = [*previous, *(p for p in (report, self.workspace / "summary.json") if p.exists())]
        for path in removed:
            path.unlink()
        print(f"=> --overwrite: removed the previous run's {', '.join(p.name for p in removed)}", flush=True)

    def _release_workspace(self, failed: bool = False) -> None:
        if self.lock is None:
            return
        self.lock.release()
        self.lock = None
        # A start that failed leaves nothing behind in a folder it created.
        if failed and getattr(self, "_created_workspace", False) and self.workspace.is_dir() \
                and not any(self.workspace.iterdir()):
            self.workspace.rmdir()

    # ------------------------------------------------------------------ setup helpers
    def _accumulation_steps(self) -> int:
        cfg = self.cfg
        if cfg.optimizer_batch_size <= 0:
            return 1
        per_step = cfg.batch_size * self.dist.world_size
        if cfg.optimizer_batch_size % per_step:
            raise UserError(
                f"{cfg.flag('optimizer_batch_size')} {cfg.optimizer_batch_size} is not a multiple of batch size x "
                f"processes ({cfg.batch_size} x {self.dist.world_size} = {per_step})"
            )
        return cfg.optimizer_batch_size // per_step

    def _make_logger(self) -> TrainingLogger:
        backends = []
        if self.dist.is_main:
            # Created only now that data and model are known to be good: a failed start leaves nothing behind.
            self.workspace.mkdir(parents=True, exist_ok=True)
            report = JSONStreamBackend(Verbosity.VERBOSE, str(self.workspace / self.cfg.raport_file),
                                       append=bool(self.resume_path))
            if report.torn_bytes:
                print(f"=> {self.workspace / self.cfg.raport_file}: cut an unfinished last line ({report.torn_bytes} "
                      f"bytes) that an interrupted run left", flush=True)
            backends.append(report)
            backends.append(StdOutBackend(Verbosity.DEFAULT))
            if self.cfg.tensorboard:
                backends.append(TensorBoardBackend(Verbosity.VERBOSE, self.cfg.tensorboard))
        if self.dist.is_main and self.cfg.output_style == "timm":
            import yaml

            with atomic_write(self.workspace / "args.yaml", "w") as f:
                yaml.safe_dump(json.loads(json.dumps(self.cfg.cli_args or self.cfg.to_dict(), default=str)), f)
        logger = TrainingLogger(self.cfg.print_freq, backends, start_epoch=self.start_epoch - 1)
        # Parameters go to the JSON report; on the screen they would bury the progress lines.
        logger.log_parameter({k: v for k, v in self.cfg.to_dict().items() if k != "model_kwargs"}, Verbosity.VERBOSE)
        logger.log_parameter({f"model.{k}": v for k, v in self.cfg.model_kwargs.items()}, Verbosity.VERBOSE)
        logger.log_parameter({"num_classes": self.num_classes, "image_size": self.image_size,
                              "world_size": self.dist.world_size, "device": str(self.device),
                              "gradient_accumulation_steps": self.accum}, Verbosity.VERBOSE)
        ips = {"unit": "images/s", "format": ":.1f"}
        seconds = {"unit": "s", "format": ":.5f"}
        loss = {"format": ":.5f"}
        acc = {"unit": "%", "format": ":.2f"}
        shown, verbose = Verbosity.DEFAULT, Verbosity.VERBOSE
        for name, meter, verbosity, meta in [
            ("train.loss", LOSS_METER, shown, loss), ("train.total_ips", PERF_METER, shown, ips),
            ("train.compute_ips", PERF_METER, verbose, ips), ("train.data_time", PERF_METER, verbose, seconds),
            ("train.compute_time", PERF_METER, verbose, seconds), ("train.lr", LR_METER, shown, {"format": ":.6g"}),
            ("train.grad_scale", PERF_METER, verbose, {"format": ":.1f"}),
        ]:
            logger.register_metric(name, meter, verbosity, meta)
        if self.teacher is not None:
            logger.register_metric("train.kd_loss", LOSS_METER, shown, loss)
            logger.register_metric("train.base_loss", LOSS_METER, shown, loss)
        k = self.cfg.topk
        for prefix in ["val"] + (["val_ema"] if self.ema else []):
            logger.register_metric(f"{prefix}.top1", ACC_METER, shown, acc)
            logger.register_metric(f"{prefix}.top{k}", ACC_METER, shown, acc)
            logger.register_metric(f"{prefix}.loss", LOSS_METER, shown, loss)
            logger.register_metric(f"{prefix}.total_ips", PERF_METER, verbose, ips)
            logger.register_metric(f"{prefix}.compute_ips", PERF_METER, verbose, ips)
            logger.register_metric(f"{prefix}.data_time", PERF_METER, verbose, seconds)
            logger.register_latency_metrics(prefix, verbose)
        return logger

    def _resume(self, path: str) -> None:
        ckpt = read_checkpoint(path)
        if "state_dict" not in ckpt or "epoch" not in ckpt:
            raise UserError(f"{path} is not a training checkpoint (no 'state_dict'/'epoch'); "
                            f"to start from its weights use {self.cfg.flag('pretrained_from_file')}")
        arch = ckpt.get("arch")
        if arch and get_model_info(arch).name != self.info.name:
            raise UserError(f"{path} was trained as {arch}, not {self.info.name}: pick the matching "
                            f"{self.cfg.flag('arch')}")
        load_state_dict_checked(self.model, ckpt["state_dict"], source=path)
        if self.ema is not None:
            # Upstream crashed here when the checkpoint had no EMA; start the average from the weights instead.
            ema_state = ckpt.get("state_dict_ema") or ckpt["state_dict"]
            load_state_dict_checked(self.ema.module, strip_prefixes(ema_state), source=path)
        if "optimizer" in ckpt and not self.cfg.evaluate and self.cfg.resume_optimizer:
            try:
                self.step.optimizer.load_state_dict(ckpt["optimizer"])
            except (ValueError, KeyError) as exc:
                raise UserError(
                    f"{path}: optimizer state does not match {self.cfg.flag('optimizer')} {self.cfg.optimizer} ({exc})"
                ) from None
        scaler_state = ckpt.get("scaler") or ckpt.get("amp_scaler")
        if scaler_state and not self.cfg.evaluate:
            self.step.scaler.load_state_dict(scaler_state)
        # This project's and ConvNets' checkpoints store the next epoch; timm's (with "version") the finished one.
        self.start_epoch = int(ckpt["epoch"]) + (1 if "version" in ckpt and "format" not in ckpt else 0)
        saved_batch = self._saved_global_batch(ckpt)
        self.start_samples = int(ckpt.get("samples", int(ckpt.get("iteration", 0)) * saved_batch))
        self.global_step = int(ckpt.get("global_step", self.start_epoch * self.iters_per_epoch
                                        + self.start_samples // self.global_batch))
        if self.step is not None:
            self.step.optimizer_steps = int(ckpt.get("optimizer_steps", self.global_step // max(self.accum, 1)))
        if not self.cfg.evaluate:
            restored = self.checkpoints.restore_best(ckpt, Path(path))
            if restored:
                print(restored, file=sys.stderr if restored.startswith("warning") else sys.stdout, flush=True)
        self.best_top1 = float(ckpt.get("best_prec1", ckpt.get("metric") or 0.0))
        self.best_epoch = int(ckpt.get("best_epoch", -1))
        self.epochs_since_best = int(ckpt.get("epochs_since_best", 0))
        rngs = ckpt.get("rng")
        if rngs and len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        if not self.cfg.evaluate and self.start_epoch >= self.cfg.epochs:
            raise UserError(f"{path} already finished {self.start_epoch} of {self.cfg.epochs} epochs; "
                            f"raise --epochs to train further")
        if self.dist.is_main:
            where = f"epoch {self.start_epoch}"
            if self.start_samples:
                where += f", iteration {self.start_samples // saved_batch} ({self.start_samples} samples)"
            print(f"=> resumed {path} at {where} (best top1 {self.best_top1:.2f})", flush=True)
            changed = self._resume_changes(ckpt)
            if changed and not self.cfg.evaluate:
                print(f"=> resuming with {changed}: the epoch and the learning rate continue from sample "
                      f"{self.start_samples} of epoch {self.start_epoch}", flush=True)

    def _saved_global_batch(self, ckpt: dict) -> int:
        """Samples per step of the run that wrote `ckpt` (older checkpoints: assume this run's)."""
        config = ckpt.get("config") or {}
        if "batch_size" in config and "world_size" in ckpt:
            return int(config["batch_size"]) * int(ckpt["world_size"])
        return self.global_batch

    def _resume_changes(self, ckpt: dict) -> str:
        """What differs from the run that wrote `ckpt`, in words ("" when nothing that moves the schedule did)."""
        config = ckpt.get("config") or {}
        before = {"batch size": config.get("batch_size"), "processes": ckpt.get("world_size"),
                  "gradient accumulation": ckpt.get("accumulation_steps")}
        now = {"batch size": self.cfg.batch_size, "processes": self.dist.world_size,
               "gradient accumulation": self.accum}
        return ", ".join(f"{name} {now[name]} (was {was})" for name, was in before.items()
                         if was is not None and was != now[name])

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_state(self, epoch: int, samples: int) -> dict:
        return {
            "epoch": epoch,
            "iteration": samples // self.global_batch,
            "samples": samples,  # of the epoch, all ranks together: the position a resume at any batch size needs
            "world_size": self.dist.world_size,
            "accumulation_steps": self.accum,
            "global_step": self.global_step,
            "optimizer_steps": self.step.optimizer_steps,
            "arch": self.info.name,
            "num_classes": self.num_classes,
            "class_names": self.data.class_names,
            "model_kwargs": dict(self.cfg.model_kwargs),
            # What validation really used, so classify.py and Triton preprocess as the reported accuracy did.
            "model_cfg": {**self.info.metadata(), "input_size": (3, self.image_size, self.image_size),
                          "crop_pct": self.crop_pct, "mean": self.mean, "std": self.std,
                          "interpolation": self.cfg.val_interpolation or self.cfg.interpolation},
            "best_prec1": self.best_top1,
            "best_epoch": self.best_epoch,
            "epochs_since_best": self.epochs_since_best,
            "state_dict": self.model.state_dict(),
            "state_dict_ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.step.optimizer.state_dict(),
            "scaler": self.step.scaler.state_dict() if self.step.scaler.is_enabled() else None,
            "config": self.cfg.to_dict(),
            **self.extra_checkpoint_state(epoch),
        }

    def extra_checkpoint_state(self, epoch: int) -> dict:
        """Entries a specialised trainer adds to every checkpoint (QAT adds its quantizer record)."""
        return {}

    def _save(self, epoch: int, samples: int, is_best: bool) -> Path | None:
        """`epoch` is the epoch to run next and `samples` how much of it is done (0 at an epoch's end)."""
        if self.cfg.save_checkpoints and not weights_are_finite(self.model, self.ema.module if self.ema else None):
            raise TrainingDiverged(f"training diverged: the weights hold NaN or inf after step {self.global_step}"
                                   f"; they were not saved, so the last checkpoint holds finite "
                                   f"weights. Lower the learning rate (or clip gradients, or use bf16) and resume "
                                   f"from it or start again")
        metric = self.best_top1 if is_best else self._last_metric
        return self.checkpoints.save(lambda: self._checkpoint_state(epoch, samples), epoch=epoch,
                                     iteration=samples // self.global_batch, is_best=is_best, metric=metric)

    # ------------------------------------------------------------------ one epoch
    def _requests_due(self, i: int) -> bool:
        return not self.dist.distributed or (i + 1) % STOP_CHECK_EVERY == 0

    def train_epoch(self, epoch: int, start_samples: int, signals: StopSignals, progress) -> tuple[int, str | None]:
        """Trains from `start_samples` into the epoch; returns (the epoch's samples done, the signal that stopped it
        before its end, or None)."""
        self.step.train()
        loader = self.data.train
        if loader.sampler is not None:
            loader.sampler.set_epoch(epoch, start=start_samples)
        steps = min(len(loader), -(-(self.epoch_samples - start_samples) // self.global_batch))
        window = MetricWindow(self.device, self.cfg.print_freq, self.dist.world_size, self.teacher is not None)
        samples, stop_by = start_samples, None
        data_start = time.perf_counter()
        for k, (images, targets) in enumerate(loader):
            if k >= steps:
                break
            data_time = time.perf_counter() - data_start
            self.logger.start_iteration()
            lr = self.schedule.apply(self.step.optimizer, epoch + samples / self.epoch_samples)
            images, targets = self._augment_on_device(images, targets, epoch)
            last_of_epoch = k + 1 == steps
            last_micro = (k + 1) % self.accum == 0 or last_of_epoch
            losses = self.step(images, targets, last_micro=last_micro)
            if last_micro and self.ema is not None:
                self.ema.update(self.model, self.step.optimizer_steps)
            self.global_step += 1
            samples += self.global_batch
            window.add(losses, images.shape[0], data_time)
            self.divergence.add(losses.loss)
            if window.due(last_of_epoch):
                shown = window.close(self.logger, lr, self.step.grad_scale())
                self.divergence.check(self.global_step, epoch)
                if progress is not None:
                    progress.set_postfix(loss=f"{shown['loss']:.4f}", img_s=f"{shown['images_per_s']:.0f}",
                                         lr=f"{lr:.4g}")
            self.logger.end_iteration(mode="train")
            if progress is not None:
                progress.update(1)
            # At the epoch's last step the epoch-end checkpoint, after validation, serves any request.
            if last_micro and not last_of_epoch and self._requests_due(k):
                requests = agree(signals, self.device, self.dist.distributed)
                if requests.stop_by:
                    stop_by = requests.stop_by
                    break
                if requests.checkpoint:
                    self._save_on_request(epoch, samples, "SIGUSR1")
            data_start = time.perf_counter()
        if self.data.train.skipped and self.dist.is_main:
            print(f"warning: skipped {len(self.data.train.skipped)} unreadable training images so far "
                  f"(first: {self.data.train.skipped[0].path})", file=sys.stderr, flush=True)
        return samples, stop_by

    def _augment_on_device(self, images: torch.Tensor, targets: torch.Tensor, epoch: int):
        """The batch augmentations (data/batch_augmentations.py), which work on whole batches on the device."""
        for op in self.batch_augmentations:
            images, targets = op(images, targets, epoch)
        return images, targets

    def validate(self, model: nn.Module, prefix: str) -> dict:
        bar = self._progress(len(self.data.val), f"{prefix}")
        result = evaluate(model, self.data.val, device=self.device, precision=self.cfg.precision,
                          topk=self.cfg.topk, max_batches=self.cfg.prof, logger=self.logger, prefix=prefix,
                          progress=bar)
        if bar is not None:
            bar.close()
        if result["images"]:
            k = self.cfg.topk
            self.logger.log_metric(f"{prefix}.top1", result["top1"], result["images"])
            self.logger.log_metric(f"{prefix}.top{k}", result[f"top{k}"], result["images"])
            self.logger.log_metric(f"{prefix}.loss", result["loss"], result["images"])
        return result

    def _for_inference(self, model: nn.Module, summary: dict):
        """--evaluate on a GPU: the fast path (what a deployment would run), unless --no-fast or --deterministic."""
        cfg = self.cfg
        if not (cfg.fast_inference and self.device.type == "cuda" and not cfg.deterministic):
            return model
        from image_classification.inference.fast import fast_predictor

        module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        precision = cfg.precision if cfg.precision in ("fp16", "bf16") else "fp32"  # TF32 is a global switch
        log = print if self.dist.is_main else None
        predictor = fast_predictor(module, device=self.device, precision=precision,
                                   batch_size=cfg.val_batch_size or cfg.batch_size, image_size=self.val_image_size,
                                   compile=cfg.inference_compile, log=log)
        summary.setdefault("inference", {}).update(
            fast_path=True, precision=precision, compile=cfg.inference_compile,
            compile_s=round(predictor.compile_seconds, 2) if predictor.compile_seconds is not None else None,
            setup_s=round(predictor.setup_seconds, 2))
        return predictor

    def _test_teacher(self) -> dict:
        """Validate the teacher before training (a teacher that does not know the data teaches nothing)."""
        result = evaluate(Resized(self.teacher, self.teacher_size), self.data.val, device=self.device,
                          precision=self.cfg.precision, topk=self.cfg.topk, max_batches=self.cfg.prof)
        k = self.cfg.topk
        self.logger.log_record("TEACHER", {"teacher.top1": result["top1"], f"teacher.top{k}": result[f"top{k}"],
                                           "teacher.loss": result["loss"]})
        if self.dist.is_main:
            print(f"=> teacher {self.cfg.teacher}: val top1 {result['top1']:.2f}, top{k} {result[f'top{k}']:.2f}",
                  flush=True)
        return result

    def _progress(self, total: int, desc: str):
        if not (self.cfg.progress and self.dist.is_main and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="it", leave=False, dynamic_ncols=True)

    # ------------------------------------------------------------------ the run
    def run(self) -> dict:
        cfg = self.cfg
        start_time = time.time()
        summary: dict = {"arch": self.info.name, "num_classes": self.num_classes, "image_size": self.image_size,
                         "workspace": str(self.workspace), "raport": str(self.workspace / cfg.raport_file),
                         "world_size": self.dist.world_size}
        last_val: dict = {}
        try:
            with compute_stream(self.device, cfg.stream_priority):
                if cfg.evaluate:
                    summary["mode"] = "evaluate"
                    self.logger.start_epoch()
                    last_val = self.validate(self._for_inference(self.model, summary), "val")
                    if self.ema is not None:
                        summary["val_ema"] = self.validate(self._for_inference(self.ema.module, summary), "val_ema")
                    self.logger.end_epoch()
                else:
                    if self.teacher is not None and cfg.test_teacher:
                        summary["teacher"] = self._test_teacher()
                    last_val = self._train_loop(summary)
        except TrainingDiverged as exc:
            # For machines too: the summary says why the run ended, next to the checkpoints it kept.
            summary.update(error=str(exc), epochs_done=self.start_epoch, elapsed_s=round(time.time() - start_time, 1))
            if self.dist.is_main:
                _write_json_atomic(summary, self.workspace / "summary.json")
            self._release_workspace()
            raise
        except BaseException:
            self._release_workspace()
            raise
        finally:
            self.logger.end()
        summary.update(
            metrics=self.logger.summary(),
            val=last_val,
            best_top1=self.best_top1 if not cfg.evaluate else last_val.get("top1"),
            best_epoch=self.best_epoch,
            elapsed_s=round(time.time() - start_time, 1),
        )
        if self.device.type == "cuda":
            # The largest of any rank's, which is what decides whether a batch size fits.
            peak = torch.tensor([torch.cuda.max_memory_allocated(self.device) / 2**30], device=self.device)
            summary["peak_gpu_memory_gib"] = round(distributed.all_reduce_max(peak).item(), 2)
        if self.dist.is_main:
            _write_json_atomic(summary, self.workspace / "summary.json")
        self._release_workspace()
        distributed.barrier()
        return summary

    def _train_loop(self, summary: dict) -> dict:
        cfg = self.cfg
        last_val: dict = {}
        end_epoch = cfg.epochs if cfg.run_epochs < 0 else min(cfg.epochs, self.start_epoch + cfg.run_epochs)
        start_samples = self.start_samples
        with StopSignals(cfg.sigusr1) as signals:
            for epoch in range(self.start_epoch, end_epoch):
                epoch_start = time.time()
                self.logger.start_epoch()
                bar = self._progress(self.iters_per_epoch - start_samples // self.global_batch,
                                     f"epoch {epoch + 1}/{cfg.epochs}")
                done, stop_by = self.train_epoch(epoch, start_samples, signals, bar)
                if bar is not None:
                    bar.close()
                start_samples = 0
                distributed.broadcast_buffers(self.model)
                if self.ema is not None:
                    distributed.broadcast_buffers(self.ema.module)
                if stop_by:
                    self.logger.end_epoch()
                    where = f"at epoch {epoch}, iteration {done // self.global_batch}"
                    self._stop(stop_by, where, self._save(epoch, done, False), summary)
                    return last_val
                last_val, best_candidate = self._validate_epoch(summary) if not cfg.training_only else ({}, {})
                is_best = self._record_best(epoch, best_candidate)
                # A stop asked for at the epoch's last step or during validation ends the run after this epoch's
                # checkpoint.
                stop_by = agree(signals, self.device, self.dist.distributed).stop_by
                self.logger.end_epoch()
                self.checkpoints.epoch_done(functools.partial(self._epoch_row, epoch, best_candidate))
                path = self._save(epoch + 1, 0, is_best)
                if path is not None:
                    summary["checkpoint"] = str(path)
                    if self.checkpoints.best_path.exists():
                        summary["best_checkpoint"] = str(self.checkpoints.best_path)
                self._print_epoch(epoch, last_val, time.time() - epoch_start, end_epoch)
                if stop_by:
                    self._stop(stop_by, f"after epoch {epoch}", path, summary)
                    break
                if 0 < cfg.early_stopping_patience <= self.epochs_since_best:
                    summary["early_stopped"] = f"no new best top1 for {self.epochs_since_best} epochs"
                    if self.dist.is_main:
                        print(f"=> early stopping: {summary['early_stopped']}", flush=True)
                    break
        summary["epochs_done"] = epoch + 1 if self.start_epoch < end_epoch else self.start_epoch
        return last_val

    def _stop(self, signal_name: str, where: str, path: Path | None, summary: dict) -> None:
        summary["stopped"] = f"{signal_name} {where}"
        if path is not None:
            summary["resume_from"] = str(path)
        if self.dist.is_main:
            # Benchmark modes and --no-checkpoints save nothing, so there is nothing to resume from.
            then = f"resume with --resume {path}" if path else "no checkpoint written (--no-checkpoints)"
            print(f"=> stopped by {signal_name} {where}; {then}", flush=True)

    def _save_on_request(self, epoch: int, iteration: int, signal_name: str) -> None:
        path = self._save(epoch, iteration, is_best=False)
        if self.dist.is_main and path is not None:
            print(f"=> {signal_name}: saved {path} at epoch {epoch}, iteration {iteration}; training goes on",
                  flush=True)

    def _validate_epoch(self, summary: dict) -> tuple[dict, dict]:
        """Validates the weights (and the EMA); returns (the weights' result, the result that judges the best)."""
        val = self.validate(self.model, "val")
        if self.ema is None:
            return val, val
        summary["val_ema"] = self._last_ema = self.validate(self.ema.module, "val_ema")
        return val, summary["val_ema"] if self.cfg.best_from_ema else val

    def _record_best(self, epoch: int, best_candidate: dict) -> bool:
        """Whether this epoch is the best so far (never without a validation)."""
        if not best_candidate:
            return False
        self._last_metric = best_candidate["top1"]
        is_best = self.best_epoch < 0 or best_candidate["top1"] > self.best_top1
        if is_best:
            self.best_top1, self.best_epoch, self.epochs_since_best = best_candidate["top1"], epoch, 0
        else:
            self.epochs_since_best += 1
        return is_best

    def _epoch_row(self, epoch: int, val: dict) -> dict:
        """The epoch's figures in timm's summary.csv columns."""
        epoch_metrics = self.logger.epoch_summary()
        row = {"epoch": epoch, "train_loss": epoch_metrics.get("train.loss")}
        if val:
            k = self.cfg.topk
            row.update(eval_loss=val["loss"], eval_top1=val["top1"], **{f"eval_top{k}": val[f"top{k}"]})
        row["lr"] = epoch_metrics.get("train.lr")
        return row

    def _print_epoch(self, epoch: int, val: dict, seconds: float, end_epoch: int) -> None:
        if not self.dist.is_main:
            return
        eta = seconds * (end_epoch - epoch - 1)
        acc = f" val top1 {val['top1']:.2f} top{self.cfg.topk} {val[f'top{self.cfg.topk}']:.2f}" if val else ""
        if val and self._last_ema is not None:
            acc += f", EMA top1 {self._last_ema['top1']:.2f}"
        print(f"epoch {epoch + 1}/{self.cfg.epochs} done in {seconds:.1f}s:{acc} "
              f"(best {self.best_top1:.2f}), eta {time.strftime('%H:%M:%S', time.gmtime(eta))}", flush=True)


def train(cfg: TrainingConfig, *, restore_quantizers: QuantizerRestorer | None = None) -> dict:
    try:
        return Trainer(cfg, restore_quantizers=restore_quantizers).run()
    except RuntimeError as exc:
        if not (distributed.is_initialized() and distributed.is_timeout(exc)):
            raise
        raise UserError(f"rank {distributed.rank()}: no answer from the other processes within --dist-timeout "
                        f"{cfg.dist_timeout:g} s (a process stopped, died or hangs: its own output says why)") from None
    finally:
        distributed.shutdown()


def print_summary(summary: dict) -> None:
    """The closing lines every entry point prints: results and where the files are."""
    lines = []
    if summary.get("mode") == "evaluate" and summary.get("val"):
        k = next((key for key in summary["val"] if key.startswith("top") and key != "top1"), None)
        lines.append(f"val top1: {summary['val']['top1']:.2f}%" + (f", {k}: {summary['val'][k]:.2f}%" if k else "")
                     + f" on {summary['val']['images']} images")
    elif summary.get("best_top1") is not None:
        lines.append(f"best val top1: {summary['best_top1']:.2f}%"
                     + (f" (epoch {summary['best_epoch'] + 1})" if summary.get("best_epoch", -1) >= 0 else ""))
    for key in ("best_checkpoint", "checkpoint", "raport"):
        if summary.get(key):
            lines.append(f"{key.replace('_', ' ')}: {summary[key]}")
    lines.append(f"summary: {Path(summary['workspace']) / 'summary.json'}")
    if summary.get("stopped"):
        then = f"resume with --resume {summary['resume_from']}" if summary.get("resume_from") else "nothing saved"
        lines.append(f"stopped by {summary['stopped']}: {then} (exit status {EXIT_RESUMABLE})")
    print("\n".join("=> " + line for line in lines), flush=True)


def exit_status(summary: dict | None) -> int:
    """0 for a finished run (or a dry run); a run a signal stopped: EXIT_RESUMABLE once it saved a checkpoint, else
    the shell's 128 + the signal's number (nothing to resume from)."""
    if not summary or not summary.get("stopped"):
        return 0
    if summary.get("resume_from"):
        return EXIT_RESUMABLE
    return 128 + int(signal.Signals[summary["stopped"].split()[0]])
