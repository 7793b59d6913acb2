"""The one evaluation loop: top-1/top-k, loss, throughput and latency, with every image counted once across ranks."""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from image_classification.runtime.distributed import all_reduce_sum


def autocast_context(device: torch.device, precision: str):
    if precision in ("fp16", "bf16"):
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model, loader, *, device: torch.device, precision: str = "fp32", topk: int = 5, max_batches: int = -1,
             logger=None, prefix: str = "val", progress=None) -> dict:
    """Returns top1, top{k}, loss, images, total_ips, compute_ips, compute_latency (+_at95/_at99/_at100) in s."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # images, top-1 hits, top-k hits, loss sum
    latencies, data_times = [], []
    k = None
    start = data_start = time.perf_counter()
    for i, (images, targets) in enumerate(loader):
        if 0 < max_batches <= i:
            break
        t0 = time.perf_counter()
        data_times.append(t0 - data_start)
        if logger is not None:
            logger.start_iteration()
        if getattr(model, "handles_precision", False):  # the fast path's Predictor: weights already in precision
            logits = model(images)
        else:
            with autocast_context(device, precision):
                logits = model(images)
        logits = logits.float()
        if k is None:
            k = min(topk, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top == targets[:, None]
        batch = torch.stack([
            torch.tensor(float(targets.shape[0]), dtype=torch.float64, device=device),
            hits[:, 0].sum().double(),
            hits.any(dim=1).sum().double(),
            F.cross_entropy(logits, targets, reduction="sum").double(),
        ])
        totals += batch
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # per-batch latency is a reported metric, so it must be real
        latency = time.perf_counter() - t0
        latencies.append(latency)
        if logger is not None:
            n = int(targets.shape[0])
            logger.log_metric(f"{prefix}.compute_ips", n / latency, n)
            logger.log_metric(f"{prefix}.total_ips", n / (latency + data_times[-1]), n)
            logger.log_metric(f"{prefix}.data_time", data_times[-1])
            logger.log_latency(prefix, latency)
            logger.end_iteration(mode=prefix)
        if progress is not None:
            progress.update(1)
        data_start = time.perf_counter()
    elapsed = time.perf_counter() - start
    local_n = totals[0].item()
    compute = float(sum(latencies))
    # Throughput adds up across ranks; accuracy sums hits and images, so each image counts once.
    rates = torch.tensor([local_n / compute if compute else 0.0, local_n / elapsed if elapsed else 0.0],
                         dtype=torch.float64, device=device)
    all_reduce_sum(totals)
    all_reduce_sum(rates)
    n, top1, topk_hits, loss = totals.tolist()
    if n == 0:
        return {"images": 0}
    lat = np.asarray(latencies if latencies else [0.0])
    return {
        "images": int(n),
        "top1": 100.0 * top1 / n,
        f"top{topk}": 100.0 * topk_hits / n,
        "loss": loss / n,
        "compute_ips": rates[0].item(),
        "total_ips": rates[1].item(),
        "compute_latency": float(lat.mean()),
        **{f"compute_latency_at{q}": float(np.quantile(lat, q / 100, method="nearest")) for q in (50, 90, 95, 99)},
        "compute_latency_at100": float(lat.max()),
    }
