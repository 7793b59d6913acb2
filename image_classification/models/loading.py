"""Checkpoint -> model, its metadata, class names, preprocessing and quantization record: the one loader that
classify.py, validate.py, the exporters, deployment and checkpoint2model share.

Any file `checkpoint.read_checkpoint` reads works: this project's and upstream's training checkpoints, timm's, a plain
state dict, a `.pth`/`.safetensors` weights file with its record, a Hugging Face-style folder. What the file records
wins over the registry's defaults; the caller's explicit choices win over both, and a contradiction is one line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from common.cli_errors import UserError
from image_classification.preprocessing import Preprocessing

from .checkpoint import (
    QUANTIZATION_KEY,
    WEIGHT_CHOICES,
    QuantizerRestorer,
    cached_published_weights,
    is_state_dict,
    load_state_dict_checked,
    quantization_record,
    read_checkpoint,
    restore_recorded_quantizers,
    select_state_dict,
    strip_prefixes,
)
from .factory import create_model
from .registry import ModelInfo, get_model_info

DEFAULT_CLASSES = 1000


@dataclass
class LoadedModel:
    model: nn.Module  # in eval mode, on the CPU
    info: ModelInfo
    preprocessing: Preprocessing  # the file's record, else the registry's defaults
    preprocessing_recorded: bool  # False: the file said nothing, and `preprocessing` is the model's default
    class_names: list[str] | None  # as the file records them (None: it has none that fit the classifier)
    checkpoint: Path | None  # None: random weights
    weights_used: str | None  # state_dict_ema, state_dict or weights (a plain state dict); None: random
    quantization: dict | None = None  # the INT8 record quant_main.py saved (its quantizers are already restored)
    model_kwargs: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)  # the file's other scalars (epoch, best_prec1, ...)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def num_classes(self) -> int:
        return int(self.model.pretrained_cfg["num_classes"])

    def unrecorded_preprocessing_warning(self, size_flag: str) -> str | None:
        """One line when the file does not say how its images were preprocessed and the model is not an ImageNet
        one (whose defaults are right): the registry's default is a guess, and `size_flag` sets it."""
        if self.checkpoint is None or self.preprocessing_recorded or self.num_classes == DEFAULT_CLASSES:
            return None
        prep = self.preprocessing
        return (f"warning: {self.checkpoint} does not record its preprocessing: using {self.name}'s default "
                f"({prep.image_size} px, crop {prep.crop_pct}); set it with {size_flag} and --crop-pct if the model "
                f"was trained otherwise")


def classifier_width(model: nn.Module, state_dict: dict) -> int | None:
    """The class count a state dict's classifier has, read through the model's own key adaptation."""
    keys = tuple(getattr(model, "classifier_keys", ()))
    if not keys:
        return None
    adapted = model.adapt_state_dict(state_dict) if hasattr(model, "adapt_state_dict") else state_dict
    weight = adapted.get(keys[0])
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) and weight.dim() >= 1 else None


def _recorded_classes(checkpoint: dict) -> int | None:
    args = checkpoint.get("args")
    for value in (checkpoint.get("num_classes"),
                  args.get("num_classes") if isinstance(args, dict) else getattr(args, "num_classes", None)):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _recorded_arch(checkpoint: dict, path: Path, info: ModelInfo | None, arch_flag: str) -> ModelInfo:
    named = checkpoint.get("arch")
    if isinstance(named, str):
        try:
            theirs = get_model_info(named)
        except UserError:
            raise UserError(f"{path} holds weights of {named!r}, which is not a registered model"
                            + (f", not {info.name}" if info else "")) from None
        if info is None:
            return theirs
        if theirs.name != info.name:
            raise UserError(f"{path} holds {theirs.name} weights, not {info.name}: pass {arch_flag} {theirs.name} "
                            f"(or drop {arch_flag})")
    if info is None:
        raise UserError(f"{path} does not name its architecture: pass {arch_flag} NAME "
                        f"(python -m image_classification.models lists them)")
    return info


def _preprocessing(model: nn.Module, checkpoint: dict) -> tuple[Preprocessing, bool]:
    cfg = dict(model.pretrained_cfg)
    recorded = checkpoint.get("model_cfg")
    if isinstance(recorded, dict) and recorded:
        cfg.update({k: v for k, v in recorded.items() if v is not None})
    return Preprocessing.from_cfg(cfg), isinstance(recorded, dict) and "input_size" in recorded


def load_checkpoint_model(
    path: str | os.PathLike | None = None,
    arch: str | None = None,
    *,
    num_classes: int | None = None,
    data_classes: int | None = None,
    weights: str = "auto",
    pretrained: bool = False,
    model_kwargs: dict | None = None,
    arch_flag: str = "--arch",
    num_classes_flag: str = "--num-classes",
    default_arch: str | None = None,
    ema_flag: str = "the EMA choice",
    restore_quantizers: QuantizerRestorer | None = None,
) -> LoadedModel:
    """Build `arch` (or the architecture the file names) with the weights of `path`, or with `pretrained` the
    published weights from the torch hub cache, or (neither) random weights.

    weights: auto (EMA when the file has it), ema or raw. The class count is `num_classes`, else the file's
    record, else its classifier's width, else `data_classes`, else 1000; a file that disagrees with `num_classes`
    or `data_classes` is one line. `model_kwargs` win over the architecture options the file records.
    `arch_flag` / `num_classes_flag` / `ema_flag` name the caller's flags in messages. `default_arch`: the
    architecture of a file that names none when `arch` is not given (a dialect's default, as upstream's --arch).
    `restore_quantizers` (quantization.state's) lets an INT8-quantized checkpoint load; without it one is refused.
    """
    if weights not in WEIGHT_CHOICES:
        raise UserError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")
    if num_classes is not None and num_classes < 1:
        raise UserError(f"{num_classes_flag} must be at least 1, got {num_classes}")
    if path is not None and pretrained:
        raise UserError("give either a weights file or the published weights (--pretrained), not both")
    info = get_model_info(arch) if arch is not None else None
    if pretrained:
        if info is None:
            raise UserError(f"the published weights are looked up by model name: pass {arch_flag} NAME")
        path = cached_published_weights(info)
    if path is None:
        if info is None:
            raise UserError(f"no model given: pass {arch_flag} NAME (python -m image_classification.models lists them)")
        model = create_model(info.name, num_classes=num_classes or data_classes or DEFAULT_CLASSES,
                             **(model_kwargs or {}))
        prep, _ = _preprocessing(model, {})
        return LoadedModel(model.eval(), info, prep, False, None, None, None, model_kwargs=dict(model_kwargs or {}))

    path = Path(path)
    checkpoint = read_checkpoint(path)
    plain = is_state_dict(checkpoint)
    meta = {} if plain else checkpoint
    if info is None and default_arch is not None and not isinstance(meta.get("arch"), str):
        info = get_model_info(default_arch)
    info = _recorded_arch(meta, path, info, arch_flag) if not plain or info is None else info
    if weights == "ema" and (plain or not (meta.get("state_dict_ema") or meta.get("model_ema"))):
        raise UserError(f"{path} has no EMA weights (no 'state_dict_ema'): drop {ema_flag}")
    state_dict, which = select_state_dict(checkpoint, weights, source=str(path))
    state_dict = strip_prefixes(state_dict)
    # The architecture options it was trained with (BN epsilon, conv SE, a GPUNet config); the caller's still win.
    recorded_kwargs = meta.get("model_kwargs") if isinstance(meta.get("model_kwargs"), dict) else {}
    kwargs = {**recorded_kwargs, **(model_kwargs or {})}
    if kwargs.get("model_config") is not None and info.family != "gpunet":
        raise UserError(f"a model config (--model-config) describes a GPUNet, but {info.name} is not one")

    classes = num_classes or _recorded_classes(meta)
    model = create_model(info.name, num_classes=classes or DEFAULT_CLASSES, **kwargs)
    width = classifier_width(model, state_dict)
    if width is not None and width != model.pretrained_cfg["num_classes"]:
        if num_classes is not None:
            raise UserError(f"{path} has {width} classes but {num_classes_flag} is {num_classes}: "
                            f"leave {num_classes_flag} out or set it to {width}")
        model = create_model(info.name, num_classes=width, **kwargs)
    restore_recorded_quantizers(model, checkpoint, str(path), restore_quantizers)
    load_state_dict_checked(model, state_dict, source=str(path))
    built = int(model.pretrained_cfg["num_classes"])
    if data_classes is not None and built != data_classes:
        origin = num_classes_flag if num_classes is not None else f"from {path}"
        raise UserError(f"the data folder has {data_classes} classes but the model has {built} ({origin}): "
                        f"validate on a folder with {built} class folders")

    prep, recorded = _preprocessing(model, meta)
    names = meta.get("class_names")
    names = [str(n) for n in names] if isinstance(names, (list, tuple)) and len(names) == built else None
    facts = {k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool)) and k != "arch"}
    return LoadedModel(model.eval(), info, prep, recorded, names, path, which,
                       quantization=quantization_record(checkpoint), model_kwargs=kwargs, facts=facts)


def loaded_model_record(loaded: LoadedModel):
    """What a weights file written from this model says about it."""
    from .weights_file import WeightsRecord

    best = loaded.facts.get("best_prec1")
    return WeightsRecord(arch=loaded.name, num_classes=loaded.num_classes, model_cfg=loaded.preprocessing.as_cfg(),
                         class_names=loaded.class_names, model_kwargs=dict(loaded.model_kwargs),
                         weights=loaded.weights_used, best_prec1=float(best) if isinstance(best, (int, float))
                         else None)


def export_weights(checkpoint_path: str | os.PathLike, weight_path: str | os.PathLike, *, ema: bool = False,
                   fmt: str | None = None, arch: str | None = None) -> dict:
    """checkpoint2model: the chosen weights of a training checkpoint as a weights file (`fmt`: pth, safetensors or
    hf; default by the path's name) carrying its architecture, class names and preprocessing. A checkpoint that does
    not name its architecture (upstream's oldest) and no `arch`: a plain `.pth` state dict, as upstream wrote."""
    from .checkpoint import same_file
    from .weights_file import format_for_path, write_pth, write_weights

    if same_file(checkpoint_path, weight_path):
        raise UserError(f"{weight_path} is the checkpoint {checkpoint_path} itself: writing the weights there would "
                        f"replace the training checkpoint; write them to another file")
    fmt = fmt or format_for_path(weight_path)
    checkpoint = read_checkpoint(checkpoint_path)
    if is_state_dict(checkpoint) or "weights_record" in checkpoint:
        raise UserError(f"{checkpoint_path} is already a plain weights file, not a training checkpoint")
    if checkpoint.get(QUANTIZATION_KEY):
        raise UserError(f"{checkpoint_path} is an INT8-quantized checkpoint, and a plain weights file cannot carry its "
                        f"quantizer state: use the checkpoint itself (classify.py, model2onnx.py, quant_main.py)")
    which_weights = "ema" if ema else "raw"
    best = checkpoint.get("best_prec1", checkpoint.get("metric"))
    if arch is None and not isinstance(checkpoint.get("arch"), str):
        if fmt != "pth":
            raise UserError(f"{checkpoint_path} does not name its architecture, which a {fmt} weights file records: "
                            f"pass --arch NAME")
        state_dict, which = select_state_dict(checkpoint, which_weights, source=str(checkpoint_path))
        state_dict = strip_prefixes(state_dict)
        write_pth(state_dict, None, weight_path)
        return {"best_prec1": best, "which": which, "entries": len(state_dict), "format": fmt, "record": False}
    loaded = load_checkpoint_model(checkpoint_path, arch, weights=which_weights, arch_flag="--arch")
    state_dict = loaded.model.state_dict()
    write_weights(state_dict, loaded_model_record(loaded), weight_path, fmt)
    return {"best_prec1": best, "which": loaded.weights_used, "entries": len(state_dict), "format": fmt,
            "record": True}


def save_pretrained(model: nn.Module, folder: str | os.PathLike, *, class_names: list[str] | None = None,
                    preprocessing: Preprocessing | None = None, model_kwargs: dict | None = None) -> Path:
    """A model built by `create_model` as a Hugging Face-style folder (config.json + model.safetensors), the
    layout timm's save_for_hf writes and `timm.create_model("local-dir:FOLDER")` / the Hub read. Preprocessing
    defaults to the model's metadata; pass what it was trained with."""
    from .weights_file import WeightsRecord
    from .weights_file import save_pretrained as write_folder

    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        raise UserError("save_pretrained takes a model built by create_model (it has no pretrained_cfg)")
    num_classes = int(cfg["num_classes"])
    if class_names is not None and len(class_names) != num_classes:
        raise UserError(f"{len(class_names)} class names given for a model with {num_classes} classes")
    prep = preprocessing or Preprocessing.from_cfg(cfg)
    record = WeightsRecord(arch=cfg["architecture"], num_classes=num_classes, model_cfg=prep.as_cfg(),
                           class_names=list(class_names) if class_names else None,
                           model_kwargs=dict(model_kwargs or {}))
    return write_folder(strip_prefixes(model.state_dict()), record, folder,
                        num_features=getattr(model, "num_features", None))
