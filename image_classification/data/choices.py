"""The names command lines offer for the data side, kept free of torch so that building a parser (and `--help`)
does not import it. BACKENDS is also the one place a data backend is declared (loader.build_data reads it);
transforms.py maps INTERPOLATIONS to their implementations."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Builder:
    """Where a data backend's builder lives, by name rather than by reference: loader.build_data imports the
    module only when the backend is chosen, so DALI is imported for the DALI backends alone (and its absence stays
    one line), and this module stays free of torch.

    The builder is called as `function(cfg, **kwargs, image_size=, val_image_size=, crop_pct=, mean=, std=,
    device=, memory_format=, seed=, num_classes=, flag=, rank=, world_size=, need_train=, need_val=)` and returns
    a DataBundle (loader.build_data documents each argument)."""

    module: str  # relative to this package (".dali"), or absolute
    function: str
    kwargs: Mapping[str, object] = field(default_factory=dict)  # fixed arguments that tell backends apart
    # What the code around the builder asks of a backend, declared here so that no caller branches on its name.
    # reads_folder: it loads a data folder (train/, val/). False for one that makes its batches up (synthetic): it
    # needs no data path and no loader workers, calibrates on its own batches, and its labels mean nothing.
    reads_folder: bool = True
    # needs_cuda: it cannot run without a CUDA device (dali-gpu decodes in DALI's GPU operators; pytorch-gpu does
    # not need one: with device=cpu its decode_jpeg runs on the CPU).
    needs_cuda: bool = False


# --data-backend's names in the order --help and the messages list them; a new backend is one entry here.
BACKENDS: dict[str, Builder] = {
    "pytorch": Builder(".loader", "build_pytorch_data"),
    "synthetic": Builder(".synthetic", "build_synthetic_data", reads_folder=False),
    "dali-cpu": Builder(".dali", "build_dali_data", {"gpu": False}),
    "dali-gpu": Builder(".dali", "build_dali_data", {"gpu": True}, needs_cuda=True),
    "pytorch-gpu": Builder(".gpu_decode", "build_gpu_decode_data"),
}
# The pytorch backend's resize interpolations (transforms.INTERPOLATIONS maps each to torchvision's mode).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_UNKNOWN = Builder("", "")  # what the helpers below answer for a name BACKENDS lacks: the defaults


def reads_folder(name: str) -> bool:
    """Whether backend `name` loads a data folder. An unknown name answers True (it is refused later, by
    build_data or the parser, with the list of names; until then it is treated as any backend with a folder)."""
    return BACKENDS.get(name, _UNKNOWN).reads_folder


def needs_cuda(name: str) -> bool:
    """Whether backend `name` cannot run without a CUDA device (False for an unknown name)."""
    return BACKENDS.get(name, _UNKNOWN).needs_cuda


def folder_backends() -> list[str]:
    """The backends that load a data folder, in BACKENDS' order."""
    return [name for name, builder in BACKENDS.items() if builder.reads_folder]
