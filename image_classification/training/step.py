"""The training step: forward, loss, backward, gradient accumulation and the optimizer step.

How the model runs (SyncBatchNorm, DDP, torch.compile, CUDA graphs) is decided here once; the epoch loop only
calls the step. Everything it returns stays on the device, so a step never waits for the GPU.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn

from image_classification.inference.evaluate import autocast_context

from .distill import kd_loss, resize_batch
from .optim import build_optimizer

# TorchInductor stores a pointwise result rather than recomputing it in each consumer once it reads more than 4
# buffers. In a backward pass, BatchNorm's recomputed output (conv output, mean, rstd, weight, bias: 5 reads) feeding
# SiLU's gradient and BN's gradient then goes through memory as an fp32 tensor the size of the activation: written
# once, read twice. Allowing 8 reads keeps it in registers. Measured on an H100 (AMP, batch 256/192, CUDA graphs):
# EfficientNet-B0 6,937 -> 8,417 images/s, GPUNet-0 5,281 -> 5,799 (benchmarks/results/2026-11-24-h100/run5).
TRAINING_INDUCTOR_OPTIONS = {"realize_reads_threshold": 8}


@dataclass
class StepLosses:
    """One micro-step's losses, on the device. `kd` and `base` only when distilling."""
    loss: torch.Tensor
    kd: torch.Tensor | None = None
    base: torch.Tensor | None = None


class TrainingStep:
    """Owns the optimizer, the GradScaler and what executes the model.

    `model` stays the plain module (checkpoints, EMA and validation use it); `executor` is what runs the step:
    the model itself, or wrapped in DDP and/or compiled.
    """

    def __init__(self, model: nn.Module, cfg, dist, *, accum: int, train_loss: nn.Module,
                 teacher: nn.Module | None = None, image_size: int, teacher_size: int):
        self.cfg, self.device, self.accum = cfg, dist.device, accum
        self.train_loss, self.teacher = train_loss, teacher
        self.image_size, self.teacher_size = image_size, teacher_size
        self.optimizer = build_optimizer(model, cfg)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=cfg.precision == "fp16", init_scale=cfg.static_loss_scale,
            growth_factor=2.0, backoff_factor=0.5, growth_interval=100,
        )
        self.distributed = dist.distributed
        if self.distributed and cfg.sync_bn:
            # The new SyncBatchNorm modules keep the same parameter objects, so the optimizer still holds them.
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.executor: nn.Module = model
        if self.distributed:
            # Wrapping broadcasts rank 0's weights; everything that copies the weights (EMA) comes after.
            self.executor = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            from image_classification.runtime.compile_options import compile_with_options, configure_compile_cache

            # DDP-aware compilation splits at bucket boundaries, so the DDP wrapper is what gets compiled.
            configure_compile_cache()
            self.executor = compile_with_options(self.executor, cfg.compile_mode,
                                                 {**TRAINING_INDUCTOR_OPTIONS, **cfg.compile_options})
        # Modes that replay CUDA graphs reuse their output memory, so each step says it starts a new iteration.
        self.graph_steps = (cfg.compile and self.device.type == "cuda"
                            and cfg.compile_mode in ("reduce-overhead", "max-autotune"))
        # With gradient accumulation the first micro-step's gradients would be the graph's own output buffers
        # (autograd adopts a fresh gradient rather than copying it), which the next replay overwrites before they are
        # added to: keep gradients in buffers of our own, zeroed in place, instead.
        self.own_grads = self.graph_steps and accum > 1
        if self.own_grads:
            for param in model.parameters():
                if param.requires_grad and param.grad is None:
                    param.grad = torch.zeros_like(param)
        self.optimizer_steps = 0

    def train(self) -> None:
        self.executor.train()

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, *, last_micro: bool) -> StepLosses:
        """One micro-step; on `last_micro` (the end of an accumulation) the optimizer steps too."""
        cfg = self.cfg
        # Gradients are all-reduced only on the micro-step that ends an accumulation.
        sync = self.executor.no_sync() if self.distributed and not last_micro else contextlib.nullcontext()
        if self.graph_steps:
            torch.compiler.cudagraph_mark_step_begin()
        kd = base = None
        with sync:
            with autocast_context(self.device, cfg.precision):
                logits = self.executor(resize_batch(images, self.image_size))
                loss = self.train_loss(logits, targets)
                if self.teacher is not None:
                    with torch.no_grad():
                        teacher_logits = self.teacher(resize_batch(images, self.teacher_size))
                    base, kd = loss, kd_loss(logits, teacher_logits, cfg.kd_temperature)
                    loss = base + cfg.kd_weight * kd
            self.scaler.scale(loss / self.accum).backward()
        if last_micro:
            self._optimizer_step()
        return StepLosses(loss.detach(), kd if kd is None else kd.detach(), base if base is None else base.detach())

    def _optimizer_step(self) -> None:
        if self.cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=not self.own_grads)
        self.optimizer_steps += 1

    def grad_scale(self) -> float | None:
        return self.scaler.get_scale() if self.scaler.is_enabled() else None
