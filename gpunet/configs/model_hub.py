"""Upstream's model hub API (`get_model_list`, `get_configs`) over this project's tables; nothing is downloaded.

    from gpunet.configs.model_hub import get_configs      # or, from inside gpunet/: from configs.model_hub import ...
    config, checkpoint = get_configs(batch=1, latency="0.65ms", gpuType="GV100")

`config` is the architecture in upstream's JSON list format (what `GPUNet_Builder().get_model` takes), built from
the registered tables; `checkpoint` is where upstream kept the published weights
(`<config_root_dir>/batch1/GV100/<latency>.pth.tar`). Upstream's asserts are one-line `UserError`s here, and
`download=True` explains where to put the file instead of fetching it.
"""
from __future__ import annotations

import os

from common.cli_errors import UserError
from image_classification.models.gpunet_archs import ARCHS

# Upstream's order: GPUNet-0, 1, 2, then the distilled D1/D2 and P0/P1 models.
_ORDER = ("gpunet-0", "gpunet-1", "gpunet-2", "gpunet-d1", "gpunet-d2", "gpunet-p0", "gpunet-p1")
_ARCHS = [ARCHS[name] for name in _ORDER]
_BY_LATENCY = {arch.latency_key: arch for arch in _ARCHS}

GPU_TYPES = ("GV100",)
BATCHES = ("1",)


def _ngc_url(arch) -> str:
    from image_classification.models import get_model_info

    return get_model_info(arch.name).weights_url


MODEL_ZOO_KEYS_B1_NGC: dict[str, dict[str, str]] = {"GV100": {arch.latency_key: _ngc_url(arch) for arch in _ARCHS}}
MODEL_ZOO_BATCH_NGC: dict[str, dict[str, dict[str, str]]] = {"1": MODEL_ZOO_KEYS_B1_NGC}
MODEL_ZOO_NAME2TYPE_B1: dict[str, str] = {arch.marketing_name: arch.latency_key for arch in _ARCHS}


def _batch_key(batch) -> str:
    key = str(batch)
    if key not in MODEL_ZOO_BATCH_NGC:
        raise UserError(f"no GPUNet models for batch {batch!r}: the model zoo has batch {', '.join(BATCHES)} only")
    return key


def get_model_list(batch=1) -> list[str]:
    """The latency keys of the model zoo ('0.65ms', ..., '0.8ms-D'), as upstream's get_model_list."""
    return list(MODEL_ZOO_BATCH_NGC[_batch_key(batch)]["GV100"])


def upstream_config(arch, num_classes: int = 1000) -> list[dict]:
    """`arch` (a GPUNetArch) in upstream's JSON list, spelled as upstream's files are: a plain head with the
    default activation (swish) carries no `act` key."""
    config = arch.to_upstream(num_classes)
    head = config[1]
    if not arch.distill and head.get("act") == "swish":
        head.pop("act")
    return config


def checkpoint_path(latency: str, gpuType: str = "GV100", config_root_dir: str | os.PathLike = "./configs",
                    batch=1) -> str:
    return os.path.join(str(config_root_dir), f"batch{_batch_key(batch)}", gpuType, f"{latency}.pth.tar")


def get_configs(batch=1, latency: str = "0.65ms", gpuType: str = "GV100",
                config_root_dir: str | os.PathLike = "./configs", download: bool = False) -> tuple[list[dict], str]:
    """(architecture as upstream's JSON list, upstream's checkpoint path) for one model of the zoo.

    `latency` is a latency key ('0.65ms'); marketing names ('GPUNet-0') and registry names ('gpunet_0') are
    accepted too. Nothing is read from or written to `config_root_dir`: the architecture comes from the registered
    tables, and the returned path is only where upstream unzipped the published checkpoint.
    """
    zoo = MODEL_ZOO_BATCH_NGC[_batch_key(batch)]
    if gpuType not in zoo:
        raise UserError(f"no GPUNet models for GPU type {gpuType!r}: the model zoo has {', '.join(zoo)} only")
    arch = _BY_LATENCY.get(str(latency)) or _BY_LATENCY.get(MODEL_ZOO_NAME2TYPE_B1.get(str(latency), ""))
    if arch is None:
        from image_classification.models import get_model_info

        try:
            arch = ARCHS.get(get_model_info(str(latency)).name)
        except UserError:
            arch = None
    if arch is None:
        raise UserError(f"unknown GPUNet latency {latency!r}; choose one of {', '.join(get_model_list(batch))}")
    path = checkpoint_path(arch.latency_key, gpuType, config_root_dir, batch)
    if download:
        url = zoo[gpuType][arch.latency_key]
        raise UserError(
            f"nothing is downloaded (download=True): fetch {url}, unzip it and put {arch.latency_key}.pth.tar at "
            f"{path} (or pass the file to validate.py --checkpoint); then call get_configs(download=False)"
        )
    return upstream_config(arch), path
