"""The 1x1 convolution kernel: a GEMM over the N*H*W rows of an NHWC tensor, with the excitation scale in its
prologue and bias, activation and residual in its epilogue.

    out[m, :] = act((x[m, :] * scale[m // (H*W), :]) @ weight.T + bias) + residual[m, :]

A tile of BLOCK_M rows may cover several samples, so the scale is gathered per row by the row's sample index (the
gate is tiny and stays in L1/L2). The scaled input is rounded to the input's dtype before the product, as the
reference `x * gate` is. Programs walk the output-channel tiles of one row tile back to back, so a row tile read for
the first is still in L2 for the next.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .activations import ACT_CODES

# Kernel bodies use Triton builtins only, not its @jit library functions (tl.zeros, tl.sum, tl.sigmoid): the CPU
# interpreter (TRITON_INTERPRET=1) cannot call library functions that Triton defined before the variable was set, and
# in a test process Triton may already be imported by then.

# Enough programs to fill an H200's 132 multiprocessors; below this, row tiles shrink.
TARGET_PROGRAMS = 132


@triton.jit
def _pointwise_kernel(
    a_ptr, w_ptr, b_ptr, s_ptr, r_ptr, y_ptr,
    M, K, NOUT, HW, N_TILES,
    sam, sak, swn, swk, ssn, ssk, srm, srn, sym,
    HAS_SCALE: tl.constexpr, HAS_RES: tl.constexpr, ACT: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_n = pid % N_TILES
    pid_m = pid // N_TILES
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = rm < M
    n_ok = rn < NOUT
    rm64 = rm.to(tl.int64)
    sample = rm // HW
    acc = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        a_mask = m_ok[:, None] & k_ok[None, :]
        a = tl.load(a_ptr + rm64[:, None] * sam + rk[None, :] * sak, mask=a_mask, other=0.0)
        if HAS_SCALE:
            s = tl.load(s_ptr + sample[:, None] * ssn + rk[None, :] * ssk, mask=a_mask, other=0.0)
            a = (a.to(tl.float32) * s.to(tl.float32)).to(a_ptr.dtype.element_ty)
        b = tl.load(w_ptr + rk[:, None] * swk + rn[None, :] * swn, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if IEEE:
            acc = tl.dot(a, b, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc)
    acc += tl.load(b_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    if ACT == 1:
        acc = tl.maximum(acc, 0.0)
    elif ACT == 2:
        acc = acc / (1.0 + tl.exp(-acc))
    mask = m_ok[:, None] & n_ok[None, :]
    if HAS_RES:
        acc += tl.load(r_ptr + rm64[:, None] * srm + rn[None, :] * srn, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + rm64[:, None] * sym + rn[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)


def _pow2_at_least(value: int, low: int) -> int:
    return max(low, triton.next_power_of_2(value))


def tile_shape(rows: int, k: int, nout: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_stages), from a sweep on the H200 (benchmarks/results/2026-12-03-h200/kernels):
    128 rows by all output channels up to 128, 64 deep in 3 stages (32 deep in 4 for inputs of up to 128 channels);
    64 rows when the grid is too small to fill the GPU. Four warps: eight were slower on every swept shape."""
    block_n = min(128, _pow2_at_least(nout, 16))
    block_k, stages = (min(32, _pow2_at_least(k, 16)), 4) if k <= 128 else (64, 3)
    block_m = 128
    if triton.cdiv(rows, block_m) * triton.cdiv(nout, block_n) < TARGET_PROGRAMS:
        block_m = 64
    return block_m, block_n, block_k, stages


def _rows(t: torch.Tensor) -> torch.Tensor:
    """An NCHW tensor as its [N*H*W, C] matrix of NHWC rows (a view for channels_last tensors)."""
    n, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(n * h * w, c)


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor | None,
                   residual: torch.Tensor | None, act: str, config: dict | None = None) -> torch.Tensor:
    """The op's computation; `config` (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) replaces the tile
    heuristic, for tuning."""
    n, k, h, w = x.shape
    nout = weight.shape[0]
    a = _rows(x)
    m = a.shape[0]
    y = torch.empty((m, nout), device=x.device, dtype=x.dtype)
    r = _rows(residual) if residual is not None else y
    s = scale if scale is not None else bias
    config = config or {}
    block_m, block_n, block_k, stages = tile_shape(m, k, nout)
    block_m, block_n, block_k = (config.get("BLOCK_M", block_m), config.get("BLOCK_N", block_n),
                                 config.get("BLOCK_K", block_k))
    n_tiles = triton.cdiv(nout, block_n)
    _pointwise_kernel[(triton.cdiv(m, block_m) * n_tiles,)](
        a, weight, bias, s, r, y,
        m, k, nout, h * w, n_tiles,
        a.stride(0), a.stride(1), weight.stride(0), weight.stride(1),
        s.stride(0) if scale is not None else 0, s.stride(-1),
        r.stride(0), r.stride(1), y.stride(0),
        HAS_SCALE=scale is not None, HAS_RES=residual is not None, ACT=ACT_CODES[act],
        IEEE=x.dtype == torch.float32, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        num_warps=config.get("num_warps", 4), num_stages=config.get("num_stages", stages),
    )
    return y.view(n, h, w, nout).permute(0, 3, 1, 2)
