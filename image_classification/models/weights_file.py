"""Weights files that carry what a model needs besides its tensors: architecture, class count and names,
preprocessing, the architecture options, the project version.

Three containers, one record (`WeightsRecord.as_dict`):
- `.pth`: a plain state dict, so upstream's `model.load_state_dict(torch.load(f))` still works; the record rides in
  the state dict's `_metadata[""]` entry, the place torch itself keeps module versions (it survives torch.save and
  `torch.load(weights_only=True)`, and load_state_dict ignores keys it does not know).
- `.safetensors`: the tensors plus the record as JSON in the header's string metadata.
- a Hugging Face-style folder: `config.json` with timm's keys (`architecture` as the timm name, `num_classes`,
  `label_names`, `pretrained_cfg`, `model_args`) and `model.safetensors`; `timm.create_model("local-dir:FOLDER")`
  and the Hub read it.
`read_weights` turns any of them back into this project's checkpoint layout (`state_dict` plus the record's keys), so
every loader that reads checkpoints reads weights files too.
"""
from __future__ import annotations

import io
import json
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common.atomic_files import atomic_write
from common.cli_errors import UserError

RECORD_KEY = "image_classification"  # in a .pth state dict's _metadata[""], a .safetensors header, config.json
FORMAT_NAME = "image_classification.weights"
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
TIMM_PREFIX = "nvidia_"
FORMATS = ("pth", "safetensors", "hf")


def project_version() -> str:
    try:
        from importlib.metadata import version

        return version("nvidia-image-classification")
    except Exception:  # a checkout run without installing: the version is unknown, not an error
        return "unknown"


def timm_name(arch: str) -> str:
    """The name timm's registry knows the architecture by (`efficientnet-b0` -> `nvidia_efficientnet_b0`)."""
    return TIMM_PREFIX + arch.replace("-", "_")


@dataclass
class WeightsRecord:
    """What a weights file says about its tensors."""

    arch: str
    num_classes: int
    model_cfg: dict  # preprocessing, as Preprocessing.as_cfg writes it
    class_names: list[str] | None = None
    model_kwargs: dict = field(default_factory=dict)
    weights: str | None = None  # which weights of the training checkpoint: state_dict_ema or state_dict
    best_prec1: float | None = None

    def as_dict(self) -> dict:
        return {"format": FORMAT_NAME, "version": project_version(), "arch": self.arch,
                "num_classes": self.num_classes, "class_names": self.class_names, "model_cfg": self.model_cfg,
                "model_kwargs": self.model_kwargs, "weights": self.weights, "best_prec1": self.best_prec1}


def _checkpoint_fields(record: dict) -> dict:
    """The record under the keys training checkpoints use, so the loaders read both the same way."""
    keep = ("arch", "num_classes", "class_names", "model_cfg", "model_kwargs", "best_prec1")
    out = {k: record[k] for k in keep if record.get(k) is not None}
    out["weights_record"] = {k: record.get(k) for k in ("format", "version", "weights")}
    return out


def _parse_record(text: str, source: Path) -> dict:
    try:
        record = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise UserError(f"cannot read checkpoint {source}: its metadata record is not valid JSON") from None
    if not isinstance(record, dict):
        raise UserError(f"cannot read checkpoint {source}: its metadata record is not a JSON object")
    return record


# --- writing ------------------------------------------------------------------------------------------------------


def _contiguous(state_dict: dict) -> dict:
    # safetensors refuses views that share storage or are not contiguous; torch.save does not care.
    return {k: v.detach().contiguous().clone() if not v.is_contiguous() else v.detach()
            for k, v in state_dict.items()}


def _write(data: bytes, path: str | os.PathLike) -> Path:
    # Serialised before the file is opened: a full disk is then ENOSPC naming the file, and the previous file stays.
    with atomic_write(path, durable=True) as f:
        f.write(data)
    return Path(path)


def safetensors_bytes(state_dict: dict, record: WeightsRecord) -> bytes:
    from safetensors.torch import save

    return save(_contiguous(state_dict), metadata={"format": "pt", RECORD_KEY: json.dumps(record.as_dict())})


def write_pth(state_dict: dict, record: WeightsRecord | None, path: str | os.PathLike) -> Path:
    plain = OrderedDict(state_dict)
    if record is not None:
        plain._metadata = OrderedDict({"": {RECORD_KEY: json.dumps(record.as_dict())}})
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    return _write(buffer.getvalue(), path)


def write_safetensors(state_dict: dict, record: WeightsRecord, path: str | os.PathLike) -> Path:
    return _write(safetensors_bytes(state_dict, record), path)


def hf_config(record: WeightsRecord, *, num_features: int | None = None) -> dict:
    """timm's config.json for this model: what `timm.create_model("local-dir:...")` and the Hub read."""
    pretrained_cfg = {**record.model_cfg, "num_classes": record.num_classes, "crop_mode": "center"}
    config = {"architecture": timm_name(record.arch), "num_classes": record.num_classes,
              "pretrained_cfg": pretrained_cfg, "model_args": dict(record.model_kwargs)}
    if num_features is not None:
        config["num_features"] = num_features
    if record.class_names:
        config["label_names"] = list(record.class_names)
    config[RECORD_KEY] = record.as_dict()
    return config


def save_pretrained(state_dict: dict, record: WeightsRecord, folder: str | os.PathLike, *,
                    num_features: int | None = None) -> Path:
    """A Hugging Face-style folder (`config.json` + `model.safetensors`), as timm's save_for_hf writes it. Weights
    first: a folder whose config.json exists always has its weights."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file: a Hugging Face-style model is a folder, pass a folder path")
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(state_dict, record, folder / HF_WEIGHTS)
    _write((json.dumps(hf_config(record, num_features=num_features), indent=2) + "\n").encode(), folder / HF_CONFIG)
    return folder


def write_weights(state_dict: dict, record: WeightsRecord, path: str | os.PathLike, fmt: str) -> Path:
    if fmt == "pth":
        return write_pth(state_dict, record, path)
    if fmt == "safetensors":
        return write_safetensors(state_dict, record, path)
    if fmt == "hf":
        return save_pretrained(state_dict, record, path)
    raise UserError(f"the weights format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def format_for_path(path: str | os.PathLike) -> str:
    """pth unless the name says otherwise: `.safetensors`, or an existing folder / a trailing slash for hf."""
    text = os.fspath(path)
    if text.endswith(".safetensors"):
        return "safetensors"
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return "hf"
    return "pth"


# --- reading ------------------------------------------------------------------------------------------------------

_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit


def is_safetensors(path: Path) -> bool:
    """safetensors files start with the header's length (8 bytes, little endian) and then its JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length <= min(_SAFETENSORS_MAX_HEADER, path.stat().st_size - 8)


def read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state_dict = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"cannot read checkpoint {path}: a damaged safetensors file ({exc})") from None
    if RECORD_KEY not in metadata:
        return state_dict  # timm's, the Hub's: tensors only
    return {"state_dict": state_dict, **_checkpoint_fields(_parse_record(metadata[RECORD_KEY], path))}


def pth_record(state_dict: dict, path: Path) -> dict | None:
    """The record a `.pth` weights file of ours carries in its `_metadata`, or None (anybody else's)."""
    metadata = getattr(state_dict, "_metadata", None)
    root = metadata.get("") if isinstance(metadata, dict) else None
    text = root.get(RECORD_KEY) if isinstance(root, dict) else None
    return _parse_record(text, path) if text is not None else None


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / HF_CONFIG).is_file()


def read_hf_folder(path: Path, read_checkpoint: Callable[[Path], dict]) -> dict:
    """The checkpoint a Hugging Face-style folder holds; a legacy pytorch_model.bin is read by `read_checkpoint`
    (checkpoint.py's, which calls this: passed in so that this module, beneath it, need not import it)."""
    weights = path / HF_WEIGHTS
    if not weights.is_file():
        legacy = path / "pytorch_model.bin"
        if not legacy.is_file():
            raise UserError(f"cannot read checkpoint {path}: the folder has {HF_CONFIG} but no {HF_WEIGHTS}")
        weights = legacy
    try:
        config = json.loads((path / HF_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read checkpoint {path}: {path / HF_CONFIG} is not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"cannot read checkpoint {path}: {path / HF_CONFIG} is not a JSON object")
    if weights.suffix == ".safetensors":
        loaded = read_safetensors(weights)
    else:
        loaded = read_checkpoint(weights)
    state_dict = loaded["state_dict"] if "state_dict" in loaded and isinstance(loaded["state_dict"], dict) else loaded
    own = config.get(RECORD_KEY)
    if isinstance(own, dict):
        return {"state_dict": state_dict, **_checkpoint_fields(own)}
    # A folder timm (or anybody) wrote: take what its config.json says.
    arch = config.get("architecture")
    if isinstance(arch, str) and arch.startswith(TIMM_PREFIX):
        arch = arch[len(TIMM_PREFIX):]
    pretrained_cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    out = {"state_dict": state_dict, "arch": arch, "model_cfg": {
        k: pretrained_cfg[k] for k in ("input_size", "crop_pct", "interpolation", "mean", "std") if k in pretrained_cfg
    }}
    if isinstance(config.get("num_classes"), int):
        out["num_classes"] = config["num_classes"]
    if isinstance(config.get("label_names"), list):
        out["class_names"] = [str(n) for n in config["label_names"]]
    if isinstance(config.get("model_args"), dict):
        out["model_kwargs"] = dict(config["model_args"])
    return {k: v for k, v in out.items() if v not in (None, {})} | {"state_dict": state_dict}


def with_record(state_dict: dict, path: Path) -> dict:
    """A loaded `.pth` state dict in the checkpoint layout when it carries our record, else unchanged."""
    record = pth_record(state_dict, path)
    if record is None:
        return state_dict
    return {"state_dict": dict(state_dict), **_checkpoint_fields(record)}
