"""How fast a forward pass could be if moving bytes were its only cost: the memory floor of a network.

Every convolution and linear layer must read its input activation and write its output once, and its weights once per
batch; anything else (BatchNorm, activations, squeeze-excitation scaling) can in principle be fused into those passes.
`layer_traffic` counts those elements with forward hooks (on the meta device, so no arithmetic is done);
`bytes_per_image` prices them at a precision and batch size; the floor is a copy bandwidth divided by that, and a
measured throughput is reported as a fraction of the floor. `copy_bandwidth_gbs` measures the bandwidth a plain
device-to-device copy reaches, the practical ceiling of any memory-bound kernel.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
_COUNTED = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class Traffic:
    """Elements a forward pass must move: per image (activations), and per batch (weights and biases)."""
    activation_elements: int
    weight_elements: int

    def bytes_per_image(self, precision: str, batch_size: int) -> float:
        return ELEMENT_BYTES[precision] * (self.activation_elements + self.weight_elements / batch_size)


def layer_traffic(model: nn.Module, image_size: int, channels: int = 3) -> Traffic:
    """Count, for one image at `image_size`, every conv/linear input and output element once per call (a layer
    called twice moves its activations twice) and every conv/linear parameter once. `model` is not touched: a copy
    runs on the meta device, or on the CPU for a model with an operator that has no meta kernel."""
    try:
        return _count(copy.deepcopy(model).to("meta"), image_size, channels)
    except (NotImplementedError, RuntimeError):  # what a missing meta kernel or a data-dependent op raises there
        return _count(copy.deepcopy(model).to("cpu", torch.float32), image_size, channels)


def _count(model: nn.Module, image_size: int, channels: int) -> Traffic:
    activations = 0

    def hook(module, inputs, output):
        nonlocal activations
        activations += inputs[0].numel() + output.numel()

    layers = [m for m in model.modules() if isinstance(m, _COUNTED)]
    handles = [m.register_forward_hook(hook) for m in layers]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, image_size, image_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    weights = {id(p): p.numel() for m in layers for p in m.parameters(recurse=False)}
    return Traffic(activations, sum(weights.values()))


def floor_images_per_s(bytes_per_image: float, bandwidth_gbs: float) -> float:
    return bandwidth_gbs * 1e9 / bytes_per_image


def copy_bandwidth_gbs(device: torch.device, megabytes: int = 1024, copies: int = 20) -> float:
    """GB/s (1e9) that copying a large buffer into another moves on a CUDA device, counting the read and the write."""
    nbytes = megabytes * 2**20
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(copies):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize(device)
    seconds = start.elapsed_time(end) / 1e3
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes * copies / seconds / 1e9


def _short(value: float) -> str:
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def roofline_text(images_per_s: float, bytes_per_image: float, bandwidth_gbs: float) -> str:
    """e.g. "floor 158k img/s at 4.3 TB/s; measured 26%"."""
    floor = floor_images_per_s(bytes_per_image, bandwidth_gbs)
    rate = f"{bandwidth_gbs / 1e3:.2g} TB/s" if bandwidth_gbs >= 1e3 else f"{bandwidth_gbs:.3g} GB/s"
    percent = 100 * images_per_s / floor
    return f"floor {_short(floor)} img/s at {rate}; measured {percent:.0f}%" if percent >= 10 else \
        f"floor {_short(floor)} img/s at {rate}; measured {percent:.2g}%"
