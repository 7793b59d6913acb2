"""Pin each training process to the CPU cores close to its GPU.

NVML reports which CPU cores are near each GPU (usually the cores of the GPU's socket). Hyperthread siblings
are grouped into physical cores from sysfs. A mode then picks this process's cores, and they are applied
with `os.sched_setaffinity`.

Modes:
    none                       do nothing (needs neither NVML nor pynvml)
    socket                     every core near the GPU
    socket_single              the first physical core near the GPU
    socket_single_unique       one physical core per GPU, never shared with another GPU
    socket_unique_interleaved  the socket's physical cores split among its GPUs, round-robin
    socket_unique_contiguous   the socket's physical cores split among its GPUs, in contiguous blocks

`cores="all_logical"` includes the hyperthread siblings of each chosen physical core; `"single_logical"` only
its first (lowest-numbered) logical core.

The core-set computation (`compute_affinities`, `compute_affinity`) is pure. It takes the masks and sibling
groups as arguments, so it runs without NVML or a GPU. Only `set_affinity` talks to NVML and the OS.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from common.cli_errors import UserError

MODES = (
    "none",
    "socket",
    "socket_single",
    "socket_single_unique",
    "socket_unique_interleaved",
    "socket_unique_contiguous",
)
CORES = ("all_logical", "single_logical")
_NVML_BITS = 64  # nvmlDeviceGetCpuAffinity returns unsigned longs of 64 bits
SYSFS_CPU = Path("/sys/devices/system/cpu")

Group = tuple[int, ...]  # the logical cores of one physical core, ascending


# --------------------------------------------------------------------------- validation

def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"unknown --gpu-affinity mode {mode!r}: choose one of {', '.join(MODES)}")


def _check_cores(cores: str) -> None:
    if cores not in CORES:
        raise UserError(f"unknown affinity cores option {cores!r}: choose one of {', '.join(CORES)}")


# --------------------------------------------------------------------------- decoding

def decode_cpu_mask(words: Iterable[int]) -> set[int]:
    """Decode an NVML CPU mask: bit i of element j is logical core j*64 + i."""
    cores = set()
    for j, word in enumerate(words):
        word = int(word)
        i = 0
        while word:
            if word & 1:
                cores.add(j * _NVML_BITS + i)
            word >>= 1
            i += 1
    return cores


def parse_cpu_list(text: str) -> Group:
    """Parse a kernel cpulist such as "0,64", "0-1" or "0-3,8" into ascending core ids."""
    cores: set[int] = set()
    for item in text.strip().split(","):
        item = item.strip()
        if not item:
            continue
        if "-" in item:
            lo, hi = item.split("-", 1)
            cores.update(range(int(lo), int(hi) + 1))
        else:
            cores.add(int(item))
    return tuple(sorted(cores))


def read_thread_siblings(root: Path | str = SYSFS_CPU) -> list[Group]:
    """Hyperthread sibling groups from sysfs. Returns an empty list where sysfs is missing (not Linux)."""
    groups = set()
    for path in Path(root).glob("cpu[0-9]*/topology/thread_siblings_list"):
        try:
            group = parse_cpu_list(path.read_text())
        except (OSError, ValueError):
            continue
        if group:
            groups.add(group)
    return sorted(groups)


def group_by_siblings(mask: Iterable[int], siblings: Sequence[Sequence[int]]) -> list[Group]:
    """Split a set of logical cores into physical cores, ordered by their lowest sibling.

    A core that appears in no sibling group counts as a physical core of its own. Siblings outside `mask`
    are left out of the group.
    """
    owner: dict[int, Group] = {}
    for group in siblings:
        key = tuple(sorted(group))
        for core in key:
            owner[core] = key
    grouped: dict[Group, list[int]] = defaultdict(list)
    for core in mask:
        grouped[owner.get(core, (core,))].append(core)
    return [tuple(sorted(grouped[key])) for key in sorted(grouped)]


# --------------------------------------------------------------------------- pure computation

def _flatten(groups: Iterable[Group], cores: str) -> set[int]:
    if cores == "all_logical":
        return {core for group in groups for core in group}
    return {group[0] for group in groups}


def _split_socket(groups: list[Group], n: int, mode: str, per_gpu: int | None) -> list[list[Group]]:
    """Split one socket's physical cores among its `n` GPUs.

    per_gpu given (balanced): each GPU gets exactly that many and the rest is dropped. Otherwise every
    physical core is used, and the first `len(groups) % n` GPUs get one more.
    """
    if per_gpu is not None:
        groups = groups[: per_gpu * n]
    if mode == "socket_unique_interleaved":
        return [groups[k::n] for k in range(n)]
    base, extra = divmod(len(groups), n)
    parts, start = [], 0
    for k in range(n):
        size = base + (1 if k < extra else 0)
        parts.append(groups[start:start + size])
        start += size
    return parts


def compute_affinities(
    mode: str,
    masks: Sequence[Iterable[int]],
    siblings: Sequence[Sequence[int]],
    cores: str = "all_logical",
    balanced: bool = True,
) -> list[set[int]]:
    """The core set of every GPU, given each GPU's logical-core mask and the hyperthread sibling groups.

    A GPU that gets no core (more GPUs than cores) gets an empty set.
    """
    _check_mode(mode)
    _check_cores(cores)
    if mode == "none":
        raise ValueError("mode 'none' sets no affinity; there is nothing to compute")
    masks = [frozenset(m) for m in masks]
    grouped = [group_by_siblings(m, siblings) for m in masks]

    if mode == "socket":
        chosen = grouped
    elif mode == "socket_single":
        chosen = [g[:1] for g in grouped]
    elif mode == "socket_single_unique":
        taken: set[Group] = set()
        chosen = []
        for groups in grouped:
            pick = next((g for g in groups if g not in taken), None)
            chosen.append([] if pick is None else [pick])
            if pick is not None:
                taken.add(pick)
    else:
        for a in masks:
            for b in masks:
                if a != b and not a.isdisjoint(b):
                    raise UserError(
                        f"--gpu-affinity {mode} needs the GPUs' CPU sets to be identical or disjoint, but NVML "
                        f"reports overlapping sets {sorted(a)} and {sorted(b)}; use --gpu-affinity socket "
                        "or none"
                    )
        sockets: dict[frozenset, list[int]] = defaultdict(list)
        for gpu, mask in enumerate(masks):
            sockets[mask].append(gpu)
        per_gpu = None
        if balanced:
            per_gpu = min(len(grouped[gpus[0]]) // len(gpus) for gpus in sockets.values())
        chosen = [[] for _ in masks]
        for gpus in sockets.values():
            for gpu, part in zip(gpus, _split_socket(grouped[gpus[0]], len(gpus), mode, per_gpu)):
                chosen[gpu] = part
    return [_flatten(groups, cores) for groups in chosen]


def compute_affinity(
    mode: str,
    gpu_id: int,
    masks: Sequence[Iterable[int]],
    siblings: Sequence[Sequence[int]],
    cores: str = "all_logical",
    balanced: bool = True,
) -> set[int]:
    """The core set of GPU `gpu_id` (see `compute_affinities`). Raises UserError when it would be empty."""
    if not 0 <= gpu_id < len(masks):
        raise UserError(f"GPU {gpu_id} is outside the {len(masks)} GPU(s) of this node; check LOCAL_RANK")
    result = compute_affinities(mode, masks, siblings, cores, balanced)[gpu_id]
    if not result:
        raise UserError(
            f"--gpu-affinity {mode} leaves no CPU core for GPU {gpu_id} ({len(masks)} GPUs on this node); "
            "use --gpu-affinity socket or none"
        )
    return result


# --------------------------------------------------------------------------- NVML and the OS

def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer; fix or unset it") from None


def _import_pynvml(mode: str):
    try:
        import pynvml
    except ImportError:
        raise UserError(
            f"--gpu-affinity {mode} needs NVML: pip install nvidia-ml-py (or use --gpu-affinity none)"
        ) from None
    return pynvml


def _visible_handles(pynvml, mode: str) -> list:
    """NVML handles of the GPUs this process can see, in CUDA's order.

    LOCAL_RANK counts the devices in CUDA_VISIBLE_DEVICES, while NVML counts all GPUs. Both are mapped here,
    so that rank 0 under CUDA_VISIBLE_DEVICES=4,5 gets GPU 4's cores.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    handles = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.lstrip("-").isdigit():
            index = int(entry)
            if not 0 <= index < pynvml.nvmlDeviceGetCount():
                break  # CUDA ignores this entry and everything after it
            handles.append(pynvml.nvmlDeviceGetHandleByIndex(index))
        elif entry.startswith("GPU-"):
            try:
                handles.append(pynvml.nvmlDeviceGetHandleByUUID(entry))
            except Exception:
                raise UserError(
                    f"--gpu-affinity {mode}: NVML cannot find CUDA_VISIBLE_DEVICES entry {entry!r} (give full "
                    "UUIDs or indices), or use --gpu-affinity none"
                ) from None
        else:
            raise UserError(
                f"--gpu-affinity {mode} cannot map CUDA_VISIBLE_DEVICES entry {entry!r} to an NVML device; "
                "use GPU indices or full GPU UUIDs, or --gpu-affinity none"
            )
    return handles


def set_affinity(
    mode: str = "none",
    gpu_id: int | None = None,
    nproc_per_node: int | None = None,
    cores: str = "all_logical",
    balanced: bool = True,
) -> set[int] | None:
    """Pin this process to the CPU cores `mode` picks for GPU `gpu_id`, and return them.

    gpu_id defaults to $LOCAL_RANK (0 if unset). nproc_per_node defaults to $LOCAL_WORLD_SIZE, else every
    visible GPU. Mode "none" returns None at once, without importing pynvml. Cores that this process may not
    use (taskset, cgroups) are left out of the GPUs' masks before choosing.
    """
    _check_mode(mode)
    if mode == "none":
        return None
    _check_cores(cores)
    if not hasattr(os, "sched_setaffinity"):
        raise UserError(f"--gpu-affinity {mode} needs Linux (os.sched_setaffinity); use --gpu-affinity none")
    if gpu_id is None:
        gpu_id = _env_int("LOCAL_RANK") or 0
    if nproc_per_node is None:
        nproc_per_node = _env_int("LOCAL_WORLD_SIZE")

    pynvml = _import_pynvml(mode)
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        raise UserError(
            f"--gpu-affinity {mode} could not start NVML ({exc}); it needs an NVIDIA driver and GPU, so use "
            "--gpu-affinity none on this machine"
        ) from None
    try:
        handles = _visible_handles(pynvml, mode)
        if nproc_per_node is None:
            nproc_per_node = len(handles)
        if not 0 < nproc_per_node <= len(handles):
            raise UserError(
                f"--gpu-affinity {mode}: {nproc_per_node} processes per node but {len(handles)} visible GPU(s); "
                "check LOCAL_WORLD_SIZE and CUDA_VISIBLE_DEVICES"
            )
        if not 0 <= gpu_id < nproc_per_node:
            raise UserError(
                f"--gpu-affinity {mode}: GPU {gpu_id} is outside the {nproc_per_node} process(es) per node; "
                "check LOCAL_RANK and LOCAL_WORLD_SIZE"
            )
        words = max(1, math.ceil((os.cpu_count() or 1) / _NVML_BITS))
        masks = [decode_cpu_mask(pynvml.nvmlDeviceGetCpuAffinity(h, words)) for h in handles[:nproc_per_node]]
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass

    available = os.sched_getaffinity(0)
    masks = [m & available for m in masks]
    result = compute_affinity(mode, gpu_id, masks, read_thread_siblings(), cores, balanced)
    os.sched_setaffinity(0, result)
    return result
