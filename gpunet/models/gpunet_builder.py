"""Upstream's `GPUNet_Builder` API (get_model, export_onnx, test_model) as thin wrappers over the shared core.

    from gpunet.configs.model_hub import get_configs
    from gpunet.models.gpunet_builder import GPUNet_Builder

    config, checkpoint = get_configs(batch=1, latency="0.65ms", gpuType="GV100")
    builder = GPUNet_Builder()
    model = builder.get_model(config)                      # our GPUNet, in eval mode, with upstream's imgRes
    builder.export_onnx(model, "gpunet.onnx")               # opset 17, dynamic batch axis
    builder.test_model(model, testBatch=200, checkpoint="0.65ms.pth.tar", imgRes=(3, 320, 320), dtype="fp16",
                       val_path="/imagenet/val", crop_pct=1.0)

Differences from upstream: the network is this project's GPUNet (our module names; upstream's checkpoint keys load
through the checkpoint loader's remap), the JSON is validated with one-line errors, ONNX export has named inputs and
a dynamic batch, and test_model runs the shared evaluation loop (fp16 autocast on a GPU, fp32 on the CPU) instead of
casting the model to half.
"""
from __future__ import annotations

import copy
import importlib.util
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from common.cli_errors import UserError
from image_classification.models.gpunet import GPUNet
from image_classification.models.gpunet_archs import ARCHS
from image_classification.models.gpunet_config import load_upstream_config
from image_classification.models.registry import IMAGENET_MEAN, IMAGENET_STD, get_model_info

ONNX_OPSET = 17
DTYPES = ("fp16", "fp32")


def _registered_name(spec) -> str | None:
    """The registered GPUNet whose architecture `spec` is (any class count), if any."""
    for name, arch in ARCHS.items():
        if arch.resolution == spec.resolution and arch.distill == spec.distill \
                and arch.to_spec(spec.tail.num_classes) == spec:
            return name
    return None


def _resolution(model: nn.Module) -> int:
    for attr in ("imgRes", "img_resolution"):
        value = getattr(model, attr, None)
        if isinstance(value, int):
            return value
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "input_size" in cfg:
        return int(cfg["input_size"][-1])
    raise UserError("cannot tell the model's input resolution: build it with GPUNet_Builder().get_model(config)")


class GPUNet_Builder:  # noqa: N801 (upstream's name)
    def get_model(self, config: Sequence[dict] | str | os.PathLike) -> GPUNet:
        """A GPUNet from upstream's JSON list (or a JSON file), in eval mode as upstream returned it.

        The class count is the tail's `num_classes`; `model.imgRes` is the data entry's resolution.
        """
        spec = load_upstream_config(config)
        model = GPUNet(spec)
        model.imgRes = spec.resolution
        name = _registered_name(spec)
        if name is not None:
            model.pretrained_cfg = get_model_info(name).metadata() | {"num_classes": model.num_classes}
        else:
            # An edited architecture: no registered name, so checkpoints are matched by their keys only.
            model.pretrained_cfg = {"input_size": (3, spec.resolution, spec.resolution), "crop_pct": 1.0,
                                    "interpolation": "bicubic", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                                    "num_classes": model.num_classes}
        return model.eval()

    def export_onnx(self, model: nn.Module, name: str | os.PathLike = "gpunet.onnx") -> str:
        """ONNX of `model` at its resolution: input `input` (N,3,R,R), output `output` (N,classes), N dynamic.

        The export runs on a CPU copy in eval mode; `model` itself is left as it was.
        """
        if importlib.util.find_spec("onnx") is None:
            raise UserError("ONNX export needs the onnx package: pip install onnx (or the project's [onnx] extra)")
        resolution = _resolution(model)
        exported = copy.deepcopy(model).cpu().float().eval()
        dummy = torch.randn(1, 3, resolution, resolution)
        path = Path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, not gone
            torch.onnx.export(
                exported, (dummy,), str(path), export_params=True, opset_version=ONNX_OPSET,
                input_names=["input"], output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False,
            )
        return str(path)

    def test_model(
        self,
        model: nn.Module,
        testBatch: int = 10,  # noqa: N803 (upstream's names)
        checkpoint: str | os.PathLike | None = None,
        imgRes: Sequence[int] = (3, 224, 224),  # noqa: N803
        dtype: str = "fp16",
        val_path: str | os.PathLike | None = None,
        crop_pct: float = 0.942,
        is_prunet: bool = False,
        *,
        workers: int = 1,
        device: torch.device | str | None = None,
        log_freq: int = 10,
    ) -> dict:
        """Top-1/top-5 of `model` on the ImageFolder `val_path` (the val folder or its parent), as upstream's dict.

        `checkpoint` loads through the project's loader (any layout; EMA weights when present, as upstream's
        timm load_checkpoint(use_ema=True)); `is_prunet` (upstream: P0/P1 are plain state dicts) is accepted and
        changes nothing, since the loader recognises plain state dicts. Preprocessing as upstream: resize to
        imgRes / crop_pct (bicubic), centre crop, ImageNet mean/std.
        """
        from image_classification.inference.validate import (
            build_val_loader,
            resolve_image_folder,
            run_evaluation,
        )
        from image_classification.models.checkpoint import load_pretrained
        from image_classification.preprocessing import Preprocessing
        from image_classification.quantization.state import restore_quantizers

        if val_path is None:
            raise UserError("test_model needs val_path: the validation ImageFolder (<dir>/<class>/<image>) or its "
                            "parent holding val/")
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if len(imgRes) != 3 or imgRes[0] != 3 or imgRes[1] != imgRes[2]:
            raise UserError(f"imgRes must be (3, R, R), got {tuple(imgRes)}")
        device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        precision = "fp16" if dtype == "fp16" and device.type == "cuda" else "fp32"
        if checkpoint is not None:
            load_pretrained(model, checkpoint, weights="auto", restore_quantizers=restore_quantizers)
        root, split = resolve_image_folder(val_path)
        prep = Preprocessing(image_size=int(imgRes[1]), crop_pct=float(crop_pct), interpolation="bicubic",
                             mean=IMAGENET_MEAN, std=IMAGENET_STD)
        loader, classes = build_val_loader(root, split, prep, batch_size=testBatch, workers=workers, device=device)
        outputs = getattr(model, "num_classes", None)
        if isinstance(outputs, int) and outputs != classes:
            raise UserError(f"{root / split} has {classes} classes but the model has {outputs}: set the tail's "
                            f"num_classes to {classes} in the config")
        model.to(device).eval()
        metrics = run_evaluation(model, loader, device=device, precision=precision, topk=5, log_freq=log_freq)
        top1, top5 = metrics["top1"], metrics["top5"]
        return {
            "top1": round(top1, 4),
            "top5": round(top5, 4),
            "top1_err": round(100.0 - top1, 4),
            "top5_err": round(100.0 - top5, 4),
            "img_size": prep.image_size,
            "interpolation": prep.interpolation,
        }
