"""torchrun-style process groups: NCCL on GPUs, gloo on CPU. Nothing home-made beyond reading the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass

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


def init_distributed(preference: str = "auto") -> DistInfo:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            # The step runs on a high-priority stream (trainer.compute_stream); NCCL's own streams get the same
            # priority, or gradient all-reduces would wait behind the step's kernels instead of overlapping them.
            options = dist.ProcessGroupNCCL.Options()
            options.is_high_priority_stream = True
            dist.init_process_group(backend="nccl", init_method="env://", pg_options=options)
        else:
            dist.init_process_group(backend="gloo", init_method="env://")
    return DistInfo(rank, local_rank, world_size, device)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


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


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
