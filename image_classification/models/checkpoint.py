"""Load weights from every checkpoint layout users bring, or fail with one line that says why.

Layouts understood:
- a plain state dict (upstream `checkpoint2model.py` output, NGC `.pth` files, torchvision/timm style);
- upstream ConvNets training checkpoints (`state_dict`, optional `state_dict_ema`, `module.` prefixes from DDP);
- timm training checkpoints (`state_dict`, `state_dict_ema`, pickled `args`);
- this project's checkpoints (a superset of upstream's layout, see training/checkpointing.py);
- timm's `efficientnet_bN` weights, renamed for our EfficientNet (timm_weights.py);
- INT8-quantized checkpoints (quant_main.py's): one of ours plus a `quantization` record. The record is read here;
  restoring its quantizers needs modelopt and is the quantization package's, so the callers that accept INT8
  checkpoints pass it in (`restore_quantizers`) and the others refuse them with one line.
Family-specific spellings (old NGC `layerN.` keys, SE weight shapes, GPUNet's module names) are handled by the
model's own `adapt_state_dict`.
"""
from __future__ import annotations

import argparse
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from common.cli_errors import UserError

from .timm_weights import convert_timm_efficientnet, is_timm_efficientnet_state_dict
from .weights_file import (
    HF_CONFIG,
    HF_WEIGHTS,
    is_hf_folder,
    is_safetensors,
    read_hf_folder,
    read_safetensors,
    with_record,
)

WEIGHT_CHOICES = ("auto", "ema", "raw")
_PREFIXES = ("module.", "_orig_mod.")
QUANTIZATION_KEY = "quantization"
# (FP32 model, quantization record, source for messages) -> the model with its quantizers, ready for the state dict:
# quantization.state.restore_quantizers.
QuantizerRestorer = Callable[[nn.Module, dict, str], nn.Module]


def read_checkpoint(path: str | os.PathLike) -> dict:
    """torch.load on CPU with weights_only, accepting the argparse.Namespace that timm checkpoints pickle; a
    `.safetensors` file or a Hugging Face-style folder is read too (weights_file.py), a weights file with our record
    comes back in the checkpoint layout (`state_dict` plus `arch`, `num_classes`, `class_names`, `model_cfg`, ...).

    A file that is not a checkpoint is one line saying what it is. torch's own text is not shown: it advises
    weights_only=False, which runs whatever code the file holds, and no checkpoint of ours needs it."""
    path = Path(path)
    if is_hf_folder(path):
        return read_hf_folder(path, read_checkpoint)
    if path.is_dir():
        raise UserError(f"cannot read checkpoint {path}: it is a directory, not a checkpoint file (a Hugging "
                        f"Face-style model folder holds {HF_CONFIG} and {HF_WEIGHTS})")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if is_safetensors(path):
        return read_safetensors(path)
    kind = checkpoint_kind(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a file that is not a checkpoint
        raise UserError(f"cannot read checkpoint {path}: {why_unreadable(exc, path, kind)}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a state dict or a training checkpoint")
    return with_record(obj, path) if is_state_dict(obj) else obj


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_OPCODE = 0x80  # the first byte of every pickle since protocol 2, so of torch's legacy format


def checkpoint_kind(path: Path) -> str:
    """"zip" (torch.save's format since PyTorch 1.6) or "legacy" (a pickle, as older torch.save wrote); anything
    else is refused here, before torch.load misreads it."""
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    if not head:
        raise UserError(f"cannot read checkpoint {path}: the file is empty")
    if head == _ZIP_MAGIC:
        return "zip"
    if head[0] == _PICKLE_PROTOCOL_OPCODE:
        return "legacy"
    raise UserError(f"cannot read checkpoint {path}: it is not a PyTorch checkpoint (not a zip archive or legacy "
                    f"pickle)")


def why_unreadable(exc: BaseException, path: Path, kind: str) -> str:
    text = str(exc)
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    # torch's own functions are all allowed: an unknown "torch." name is a legacy pickle cut short inside a name.
    if unsupported and not unsupported.group(1).startswith("torch."):
        return (f"it holds a pickled {unsupported.group(1)}, and only tensors and plain containers are loaded "
                f"(unpickling other objects can run code): save its state dict instead")
    if kind == "zip":
        if zipfile.is_zipfile(path):
            return "it is a zip archive, but not a readable PyTorch checkpoint (damaged, or not written by torch.save)"
        return "its zip archive is damaged or truncated (copy or save it again)"
    return "it is a pickle but not a readable PyTorch checkpoint (damaged, truncated, or another program's)"


def is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def select_state_dict(checkpoint: dict, weights: str = "auto", source: str = "checkpoint") -> tuple[dict, str]:
    """Return (state dict, which one) from any supported layout; `weights` is auto (EMA if present), ema or raw."""
    if weights not in WEIGHT_CHOICES:
        raise UserError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")
    if is_state_dict(checkpoint):
        if weights == "ema":
            raise UserError(f"{source} is a plain state dict with no EMA weights; drop the EMA choice")
        return checkpoint, "weights"
    ema = checkpoint.get("state_dict_ema") or checkpoint.get("model_ema")
    raw = checkpoint.get("state_dict") or checkpoint.get("model")
    if weights == "ema" or (weights == "auto" and ema):
        if not ema:
            raise UserError(f"{source} has no EMA weights (no 'state_dict_ema'): use its raw weights instead")
        return ema, "state_dict_ema"
    if not raw:
        keys = ", ".join(sorted(map(str, checkpoint))[:8])
        raise UserError(f"{source} has no model weights: expected 'state_dict' or tensors, found keys {keys}")
    return raw, "state_dict"


def strip_prefixes(state_dict: dict) -> dict:
    """Drop wrappers' prefixes: `module.` (DDP/DataParallel) and `_orig_mod.` (torch.compile)."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def _abbreviate(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def load_state_dict_checked(
    model: nn.Module, state_dict: dict, *, source: str = "checkpoint", fresh_classifier: bool = False
) -> None:
    """Strict load after the model's own key adaptation; any mismatch is one line naming the keys."""
    state_dict = strip_prefixes(state_dict)
    if is_timm_efficientnet_state_dict(state_dict):  # timm's efficientnet_bN weights, renamed to ours
        state_dict = convert_timm_efficientnet(state_dict, getattr(model, "pretrained_cfg", {}).get("architecture"))
    if hasattr(model, "adapt_state_dict"):
        state_dict = model.adapt_state_dict(state_dict)
    own = model.state_dict()
    classifier_keys = tuple(getattr(model, "classifier_keys", ()))
    # A different class count changes only the first dimension of the classifier; any other difference means
    # weights of another architecture, reported below as shape mismatches.
    mismatched_head = [
        k for k in classifier_keys if k in state_dict and k in own
        and state_dict[k].shape[0] != own[k].shape[0] and state_dict[k].shape[1:] == own[k].shape[1:]
    ]
    if mismatched_head:
        theirs = state_dict[mismatched_head[0]].shape[0]
        ours = own[mismatched_head[0]].shape[0]
        if not fresh_classifier:
            raise UserError(
                f"{source} has {theirs} classes but the model has {ours}: set the class count to {theirs}, "
                f"or ask for a fresh classifier head (--fresh-classifier) to fine-tune on {ours} classes"
            )
        state_dict = {k: v for k, v in state_dict.items() if k not in classifier_keys}

    missing = [k for k in own if k not in state_dict and not (fresh_classifier and k in classifier_keys)]
    unexpected = [k for k in state_dict if k not in own]
    quantizer_keys = [k for k in unexpected if "_quantizer." in k]
    if quantizer_keys and not any("_quantizer." in k for k in own):
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise UserError(
            f"{source} holds an INT8-quantized model ({len(quantizer_keys)} quantizer ranges such as "
            f"{quantizer_keys[0]}) and {arch} is built in FP32 here: load a quant_main.py checkpoint with "
            f"quant_main.py (--resume, --evaluate), classify.py or model2onnx.py, which restore its quantizers"
        )
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state_dict
        if k in own and state_dict[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_abbreviate(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_abbreviate(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({_abbreviate(shapes, 2)})")
    if problems:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise UserError(f"{source} does not fit {arch}: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=not fresh_classifier)


def load_pretrained(
    model: nn.Module, path: str | os.PathLike, *, weights: str = "auto", fresh_classifier: bool = False,
    restore_quantizers: QuantizerRestorer | None = None,
) -> dict:
    """Load weights from a file in any supported layout; returns the checkpoint's metadata (minus tensors).
    An INT8 checkpoint needs `restore_quantizers` (see the module's docstring)."""
    checkpoint = read_checkpoint(path)
    arch = checkpoint.get("arch") if not is_state_dict(checkpoint) else None
    expected = getattr(model, "pretrained_cfg", {}).get("architecture")
    if isinstance(arch, str) and expected and arch != expected:
        from .registry import share_weights

        try:
            same = share_weights(arch, expected)
        except UserError:
            same = False
        if not same:
            raise UserError(f"{path} holds {arch} weights, not {expected}: pick the matching --arch")
    if isinstance(arch, str) and expected and checkpoint.get(QUANTIZATION_KEY):
        from .registry import get_model_info

        if get_model_info(arch).name != expected:
            # The recorded quantizers name this architecture's modules: even a weight-compatible twin differs there.
            raise UserError(f"{path} holds an INT8-quantized {arch}, not {expected}: its quantizers fit {arch} "
                            f"only, pick --arch {arch}")
    state_dict, which = select_state_dict(checkpoint, weights, source=str(path))
    restore_recorded_quantizers(model, checkpoint, str(path), restore_quantizers)
    load_state_dict_checked(model, state_dict, source=str(path), fresh_classifier=fresh_classifier)
    meta = {} if is_state_dict(checkpoint) else {
        k: v for k, v in checkpoint.items() if not isinstance(v, (dict, torch.Tensor)) or k == "args"
    }
    meta["weights_used"] = which
    return meta


def quantization_record(checkpoint) -> dict | None:
    """The checkpoint's quantization record, or None for an FP32 checkpoint (or a plain state dict)."""
    if not isinstance(checkpoint, dict):
        return None
    record = checkpoint.get(QUANTIZATION_KEY)
    return record if isinstance(record, dict) and "modelopt_state" in record else None


def read_quantization_record(path: str | os.PathLike) -> dict | None:
    return quantization_record(read_checkpoint(path))


def restore_recorded_quantizers(model: nn.Module, checkpoint: dict, source: str,
                                restore_quantizers: QuantizerRestorer | None) -> nn.Module:
    """Give `model` the INT8 quantizers a quantized checkpoint was saved with, so that its state dict fits; FP32
    checkpoints leave the model as it is. Call it between building the model and loading weights. Without
    `restore_quantizers` an INT8 checkpoint is refused in one line that says how to load it."""
    record = quantization_record(checkpoint)
    if record is None:
        return model
    if restore_quantizers is None:
        raise UserError(f"{source} holds an INT8-quantized model: load it with quant_main.py (--resume, --evaluate), "
                        f"classify.py or model2onnx.py, which restore its quantizers (from Python, pass "
                        f"restore_quantizers=image_classification.quantization.state.restore_quantizers)")
    restore_quantizers(model, record, source)
    return model


def published_weights_path(info) -> Path | None:
    """Where the published (NGC) weights of a model are looked for in the torch hub cache (None: it has none)."""
    if not info.weights_url:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / (info.weights_file or info.weights_url.rsplit("/", 1)[-1])


def cached_published_weights(info) -> Path:
    """The published (NGC) weights file if it is already in the torch hub cache; we never download at run time."""
    cache = published_weights_path(info)
    if cache is None:
        raise UserError(f"{info.name} has no published weights; pass a checkpoint file instead")
    if cache.is_file():
        return cache
    unpack = f" (unzip it and take {cache.name})" if info.weights_file else ""
    raise UserError(
        f"published weights for {info.name} are not cached and nothing is downloaded at run time: "
        f"fetch {info.weights_url}{unpack} and pass the file as the checkpoint (or save it as {cache})"
    )


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two spellings name one file: `./a.pth` and `a.pth`, a symbolic link and its target, or (both
    existing) two hard links."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet, so they are different files
        return False
