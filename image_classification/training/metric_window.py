"""The training metrics of one `--print-freq` window: summed on the device step by step, read once at its end.

Reading a loss value waits for the GPU, so the steps inside a window never read one; the window's close is the
only host sync of the metrics (and the one place a stop or a non-finite loss can be noticed cheaply).
"""
from __future__ import annotations

import time

import torch

from ..runtime import distributed
from .step import StepLosses


class MetricWindow:
    def __init__(self, device: torch.device, print_freq: int, world_size: int, distilling: bool):
        self.device, self.print_freq, self.world_size, self.distilling = device, print_freq, world_size, distilling
        self.loss = torch.zeros((), device=device)
        self.kd = torch.zeros((), device=device)
        self.base = torch.zeros((), device=device)
        self._reset_counts()

    def _reset_counts(self) -> None:
        self.steps, self.images, self.data_time = 0, 0, 0.0
        self.start = time.perf_counter()

    def add(self, losses: StepLosses, images: int, data_time: float) -> None:
        self.loss += losses.loss
        if self.distilling:
            self.kd += losses.kd
            self.base += losses.base
        self.steps += 1
        self.images += images
        self.data_time += data_time

    def due(self, last_of_epoch: bool) -> bool:
        return self.steps == self.print_freq or last_of_epoch

    def _mean_over_ranks(self, total: torch.Tensor) -> float:
        return distributed.all_reduce_sum(total / self.steps).item() / self.world_size

    def close(self, logger, lr: float, grad_scale: float | None) -> dict:
        """Logs the window's means and rates, starts the next window; returns the figures for a progress bar."""
        n = self.steps
        mean_loss = self._mean_over_ranks(self.loss)
        elapsed = time.perf_counter() - self.start
        world_images = self.images * self.world_size
        logger.log_metric("train.loss", mean_loss, n)
        if self.distilling:
            logger.log_metric("train.kd_loss", self._mean_over_ranks(self.kd), n)
            logger.log_metric("train.base_loss", self._mean_over_ranks(self.base), n)
        logger.log_metric("train.total_ips", world_images / elapsed, n)
        logger.log_metric("train.compute_ips", world_images / max(elapsed - self.data_time, 1e-9), n)
        logger.log_metric("train.data_time", self.data_time / n, n)
        logger.log_metric("train.compute_time", (elapsed - self.data_time) / n, n)
        logger.log_metric("train.lr", lr)
        if grad_scale is not None:
            logger.log_metric("train.grad_scale", grad_scale)
        for total in (self.loss, self.kd, self.base):
            total.zero_()
        self._reset_counts()
        return {"loss": mean_loss, "images_per_s": world_images / elapsed, "lr": lr}
