"""torch.compile as every wing uses it: TorchInductor options on top of a mode, the fast path's options per batch
size, and the on-disk cache. Training, the inference fast path, the benchmark and the AOTInductor exporter all
compile, so this lives beneath them.

Compiled artefacts are cached across processes: before compiling, `configure_compile_cache` points
TORCHINDUCTOR_CACHE_DIR at `$IMAGE_CLASSIFICATION_CACHE/inductor` (default `~/.cache/image_classification/inductor`)
unless the user already chose an inductor cache folder, so a second process reuses the compiled kernels (FX graph
cache, autotuning results and Triton/C++ kernels) instead of recompiling from scratch.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from common.cli_errors import UserError

CACHE_ENV = "IMAGE_CLASSIFICATION_CACHE"

# Measured on an H100 (benchmarks/explore_inductor.py, results in benchmarks/): lowering 1x1 convolutions to cuBLAS
# matmuls (with frozen weights) cut GPUNet-0's batch-1 latency 0.249 -> 0.235 ms and EfficientNet-B0's 0.472 -> 0.429
# ms, but cost B0 6% at batch 256, where cuDNN's NHWC 1x1 kernels win. Max-autotune (Triton conv/GEMM templates) was
# slower at both sizes and took minutes to compile.
# Freezing alone at larger batches, measured on an H200 (benchmarks/results/2026-12-03-h200/run): the same speed as
# without it (B0 41,405 vs 41,397 img/s, GPUNet-0 30,287 vs 30,101 at batch 256) in far less memory (peak 1.00 vs 3.77
# GiB, 1.31 vs 2.81), since the frozen weights are constants rather than a second copy beside the module's.
SMALL_BATCH = 8
FAST_COMPILE_OPTIONS = {"freezing": True, "conv_1x1_as_mm": True}
LARGE_BATCH_OPTIONS = {"freezing": True}


def fast_compile_options(batch_size: int | None) -> dict:
    """The TorchInductor options of the fast path for a batch size (None: unknown, treated as small)."""
    return dict(FAST_COMPILE_OPTIONS if batch_size is None or batch_size <= SMALL_BATCH else LARGE_BATCH_OPTIONS)


# --- the compile cache --------------------------------------------------------------------------------------------


def default_cache_root() -> Path:
    """`$IMAGE_CLASSIFICATION_CACHE`, else `$XDG_CACHE_HOME/image_classification` (~/.cache/image_classification)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "image_classification"


def configure_compile_cache() -> Path:
    """Point TorchInductor's on-disk cache at a stable folder, so compiled kernels outlive the process.

    IMAGE_CLASSIFICATION_CACHE (set) always wins: `$IMAGE_CLASSIFICATION_CACHE/inductor`. Otherwise a
    TORCHINDUCTOR_CACHE_DIR that the user set (anything but inductor's per-boot default under /tmp) is kept, and the
    default is `~/.cache/image_classification/inductor`. Returns the folder in use.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if os.environ.get(CACHE_ENV) or not current or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        folder = default_cache_root() / "inductor"
    else:
        folder = Path(current)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the compile cache folder {folder}: {exc.strerror or exc}; "
                        f"point {CACHE_ENV} at a writable folder") from None
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    # Caches on by default in recent PyTorch; say so explicitly for older ones.
    from torch._inductor import config as inductor_config

    for flag in ("fx_graph_cache", "autotune_local_cache"):
        if hasattr(inductor_config, flag):
            setattr(inductor_config, flag, True)
    return folder


# --- torch.compile with options ---------------------------------------------------------------------------------------


def unknown_inductor_options(options: dict) -> list[str]:
    """The keys of `options` that are not TorchInductor config names (dotted ones checked by their first part)."""
    from torch._inductor import config as inductor_config

    return sorted(k for k in options if not hasattr(inductor_config, k.split(".")[0]))


def compile_with_options(model: nn.Module, mode: str, options: dict | None):
    """torch.compile with a mode and extra inductor options (torch.compile itself takes one or the other)."""
    if not options:
        return torch.compile(model, mode=mode)  # attribute lookups (pretrained_cfg) reach `model`
    unknown = unknown_inductor_options(options)
    if unknown:
        raise UserError(f"unknown TorchInductor option(s): {', '.join(unknown)}")
    merged = {**torch._inductor.list_mode_options(mode), **options}
    return torch.compile(model, options=merged)
