"""Helpers shared by the kernel tests."""
import torch


def channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64; NaN never passes a `<` comparison."""
    out, ref = out.double().cpu(), ref.double().cpu()
    return float((out - ref).norm() / ref.norm())


# Relative error (norm) the kernels must reach against a float64 reference of the same inputs: float32 arithmetic
# lands near 1e-7; fp16 storage of the output (11-bit mantissa) near 3e-4; bf16 (8 bits) near 3e-3.
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}
