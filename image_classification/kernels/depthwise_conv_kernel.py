"""The depthwise convolution kernel: NHWC, bias and activation in the epilogue, the SE spatial sums beside it.

One program computes a tile of BLOCK_P output pixels of one sample by BLOCK_C channels. Channels are the contiguous
axis, so each tap reads BLOCK_C neighbouring values per pixel (coalesced); the k*k taps re-read neighbouring pixels,
which the L1 cache serves. Each program also writes its tile's per-channel sum of the (rounded) output into a
partial-sum buffer [N, tiles, C] in float32, which the caller reduces: no atomics, so the mean is deterministic.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .activations import ACT_CODES

# Kernel bodies use Triton builtins only, not its @jit library functions (tl.zeros, tl.sum, tl.sigmoid): the CPU
# interpreter (TRITON_INTERPRET=1) cannot call library functions that Triton defined before the variable was set, and
# in a test process Triton may already be imported by then.

# Enough programs to fill an H200's 132 multiprocessors twice; below this, tiles shrink.
TARGET_PROGRAMS = 264


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _depthwise_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, part_ptr,
    H, W, C, OH, OW, P_TILES,
    sxn, sxh, sxw, sxc,
    syn, syh, syw,
    KSIZE: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, ACT: tl.constexpr, POOL: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid_np = tl.program_id(0)
    pid_c = tl.program_id(1)
    n = pid_np // P_TILES
    tile = pid_np % P_TILES
    p = tile * BLOCK_P + tl.arange(0, BLOCK_P)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = p < OH * OW
    c_ok = c < C
    oh = p // OW
    ow = p % OW
    x_base = x_ptr + n.to(tl.int64) * sxn
    acc = tl.full([BLOCK_P, BLOCK_C], 0.0, tl.float32)
    for kh in tl.static_range(KSIZE):
        ih = oh * STRIDE - PAD + kh
        row_ok = p_ok & (ih >= 0) & (ih < H)
        for kw in tl.static_range(KSIZE):
            iw = ow * STRIDE - PAD + kw
            ok = row_ok & (iw >= 0) & (iw < W)
            offs = ih.to(tl.int64)[:, None] * sxh + iw.to(tl.int64)[:, None] * sxw + c[None, :] * sxc
            xv = tl.load(x_base + offs, mask=ok[:, None] & c_ok[None, :], other=0.0)
            wv = tl.load(w_ptr + (kh * KSIZE + kw) * C + c, mask=c_ok, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    acc += tl.load(b_ptr + c, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    if ACT == 1:
        acc = tl.maximum(acc, 0.0)
    elif ACT == 2:
        acc = acc / (1.0 + tl.exp(-acc))
    y = acc.to(y_ptr.dtype.element_ty)
    mask = p_ok[:, None] & c_ok[None, :]
    y_offs = n.to(tl.int64) * syn + oh.to(tl.int64)[:, None] * syh + ow.to(tl.int64)[:, None] * syw + c[None, :]
    tl.store(y_ptr + y_offs, y, mask=mask)
    if POOL:
        # Sum what the reference averages: the output as stored, in its own precision.
        total = tl.reduce(tl.where(mask, y.to(tl.float32), 0.0), 0, _add)
        tl.store(part_ptr + (n.to(tl.int64) * P_TILES + tile) * C + c, total, mask=c_ok)


def _pow2_at_least(value: int, low: int) -> int:
    return max(low, triton.next_power_of_2(value))


def tile_shape(n: int, pixels: int, channels: int) -> tuple[int, int]:
    """(BLOCK_P, BLOCK_C), from a sweep on the H200 (benchmarks/results/2026-12-03-h200/kernels): 32 pixels by 64
    channels, or 64-128 pixels by 32 channels where 64-wide tiles would pad the channels more (96, 144, 480, 672);
    pixel tiles shrink while the grid is too small to fill the GPU (batch 1 at 7x7)."""
    padded = {width: triton.cdiv(channels, width) * width for width in (64, 32)}
    block_c = 64 if padded[64] <= padded[32] else 32
    block_c = min(block_c, _pow2_at_least(channels, 16))
    block_p = 32 if block_c == 64 else (128 if pixels >= 1024 else 64)
    block_p = min(block_p, _pow2_at_least(pixels, 16))
    while block_p > 16 and n * triton.cdiv(pixels, block_p) * triton.cdiv(channels, block_c) < TARGET_PROGRAMS:
        block_p //= 2
    while block_c > 32 and n * triton.cdiv(pixels, block_p) * triton.cdiv(channels, block_c) < TARGET_PROGRAMS:
        block_c //= 2
    return block_p, block_c


def depthwise_conv(x: torch.Tensor, weight_taps: torch.Tensor, bias: torch.Tensor, kernel_size: int, stride: int,
                   padding: int, act: str, pool: bool, config: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The op's computation; `config` (BLOCK_P, BLOCK_C, num_warps) replaces the tile heuristic, for tuning."""
    n, c, h, w = x.shape
    oh = (h + 2 * padding - kernel_size) // stride + 1
    ow = (w + 2 * padding - kernel_size) // stride + 1
    x_nhwc = x.permute(0, 2, 3, 1)
    y_nhwc = torch.empty((n, oh, ow, c), device=x.device, dtype=x.dtype)
    config = config or {}
    block_p, block_c = tile_shape(n, oh * ow, c)
    block_p, block_c = config.get("BLOCK_P", block_p), config.get("BLOCK_C", block_c)
    p_tiles = triton.cdiv(oh * ow, block_p)
    partial = torch.empty((n, p_tiles, c) if pool else (1,), device=x.device, dtype=torch.float32)
    grid = (n * p_tiles, triton.cdiv(c, block_c))
    _depthwise_kernel[grid](
        x_nhwc, weight_taps, bias, y_nhwc, partial,
        h, w, c, oh, ow, p_tiles,
        *x_nhwc.stride(),
        *y_nhwc.stride()[:3],
        KSIZE=kernel_size, STRIDE=stride, PAD=padding, ACT=ACT_CODES[act], POOL=pool,
        BLOCK_P=block_p, BLOCK_C=block_c, num_warps=config.get("num_warps", 4),
    )
    y = y_nhwc.permute(0, 3, 1, 2)
    mean = partial.sum(1) / (oh * ow) if pool else x.new_empty((0,), dtype=torch.float32)
    return y, mean
