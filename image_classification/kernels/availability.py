"""Whether the Triton ops can run here, said without importing Triton's kernels."""
from __future__ import annotations

import importlib.util
import os

import torch

FAST_DTYPES = (torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """Triton's CPU interpreter is on (it must be set before the kernels are first defined)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unavailable_reason(device: torch.device | str, dtype: torch.dtype) -> str | None:
    """None when the fused kernels can serve `device` and `dtype` on the fast path; otherwise why not, in words."""
    device = torch.device(device)
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed (pip install triton)"
    if device.type != "cuda":
        return f"they run on a CUDA device, not {device.type}"
    if dtype not in FAST_DTYPES:
        return f"they serve fp16 and bf16, not {str(dtype).removeprefix('torch.')}"
    return None
