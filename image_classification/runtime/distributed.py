"""torchrun-style process groups: NCCL on GPUs, gloo on CPU. Nothing home-made beyond reading the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from common.cli_errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if preference == "cuda":
        raise UserError("a CUDA device was asked for but none is available (use --cpu or check the driver)")
    return torch.device("cpu")


def is_timeout(exc: BaseException) -> bool:
    """Whether a collective failed because another rank did not answer in time (gloo and NCCL word it alike)."""
    text = str(exc).lower()
    return "timed out" in text or "timeout" in text


def init_distributed(preference: str = "auto", timeout_s: float = 600.0) -> DistInfo:
    """`timeout_s`: how long any collective (the rendezvous too) waits for the other ranks before it fails, instead
    of PyTorch's 10 (NCCL) or 30 (gloo) minutes: a rank that stopped or hangs must not hold the others for long."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        if device.type == "cuda":
            torch.cuda.set_device(device)
            # The step runs on a high-priority stream (trainer.compute_stream); NCCL's own streams get the same
            # priority, or gradient all-reduces would wait behind the step's kernels instead of overlapping them.
            options = dist.ProcessGroupNCCL.Options()
            options.is_high_priority_stream = True
            dist.init_process_group(backend="nccl", init_method="env://", pg_options=options, timeout=timeout)
        else:
            dist.init_process_group(backend="gloo", init_method="env://", timeout=timeout)
    return DistInfo(rank, local_rank, world_size, device)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on any rank (itself where there is one rank); a collective under DDP."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(obj) -> list:
    """all_gather_object for objects that hold tensors: they travel as torch.save bytes, because pickled CPU
    tensors fail to unpickle inside all_gather_object on recent PyTorch."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, buffer.getvalue())
    return [torch.load(io.BytesIO(b), weights_only=True) for b in out]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank rank 0's BatchNorm statistics (DDP keeps parameters in sync, not running stats), so all
    ranks validate, and the checkpoint holds, one and the same model."""
    if dist.is_available() and dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
