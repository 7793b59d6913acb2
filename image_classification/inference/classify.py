"""Classify image files with a trained model: the library under `efficientnet/classify.py` and `gpunet/classify.py`
(their command line is image_classification/cli/classify.py).

    python classify.py --weights model_best.pth.tar --image cat.jpg [--image photos/ --image 'shots/*.png']

For each image: its path on one line, then the top-k classes as `<class>: xx.x%` (descending); `--json` prints one
JSON document instead. Differences from upstream's classify.py (which used 224 px, bilinear resizing and AMP for
every arch, even with --cpu):
- preprocessing comes from the model: the checkpoint's `model_cfg` (a model trained at 32 px is classified at
  32 px), else the registry's metadata (image size, crop_pct, bicubic for EfficientNet and GPUNet, mean and std);
- the architecture and the class count come from the checkpoint when it carries them;
- class names: ImageNet's for 1000-class models, else the checkpoint's `class_names`, else `--labels`;
- many images (files, directories, glob patterns) in batches; an unreadable one is reported and skipped;
- on CPU the precision is FP32 (AMP on CPU is refused); on a GPU the inference fast path is used;
- an INT8-quantized checkpoint (quant_main.py's) runs with its quantizers restored (fake quantization, as it was
  validated), never through the fast path, whose BatchNorm folding would change the weights its ranges fit.
  Restoring them is the quantization package's, above this one: the caller passes `restore_quantizers`.

`load_classifier()` is the importable API (Triton and tests reuse it).
"""
from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn as nn

from common.cli_errors import UserError
from image_classification.models.checkpoint import QuantizerRestorer
from image_classification.preprocessing import Preprocessing

from .classify_flags import DEFAULT_BATCH, DEFAULT_TOPK, PRECISIONS, build_parser  # noqa: F401 (importable here as before)

IMAGENET_CLASSES = 1000
_GLOB_CHARS = set("*?[")


# --- class names --------------------------------------------------------------------------------------------------


def imagenet_class_names() -> list[str]:
    """ImageNet-1k's human-readable names, in class-index order (shipped inside torchvision: nothing downloaded)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names from a file: one per line, a JSON list, or a JSON object {index: name or [wnid, name]}."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read labels file {path}: {exc}") from None
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UserError(f"labels file {path} is not valid JSON: {exc}") from None
        if isinstance(data, dict):
            try:
                items = sorted((int(k), v) for k, v in data.items())
            except ValueError:
                raise UserError(f"labels file {path}: a JSON object needs class indices as keys") from None
            if [i for i, _ in items] != list(range(len(items))):
                raise UserError(f"labels file {path}: the JSON object's keys must be the indices 0..{len(items) - 1}")
            data = [v[-1] if isinstance(v, list) and v else v for _, v in items]
        if not all(isinstance(v, (str, int, float)) for v in data):
            raise UserError(f"labels file {path}: expected a JSON list of class names")
        return [str(v) for v in data]
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise UserError(f"labels file {path} is empty: expected one class name per line")
    return names


def _looks_like_wordnet_ids(names: Sequence[str]) -> bool:
    return all(len(n) == 9 and n[0] == "n" and n[1:].isdigit() for n in names)


def resolve_class_names(num_classes: int, checkpoint_names=None, labels=None) -> list[str]:
    """`labels` (a file or a list) wins; 1000 classes get ImageNet's names (unless the checkpoint brings its own
    names that are not WordNet ids); then the checkpoint's `class_names`; else `class <i>`."""
    if labels is not None:
        names = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else [str(n) for n in labels]
        if len(names) != num_classes:
            source = f"labels file {labels}" if isinstance(labels, (str, os.PathLike)) else "the labels"
            raise UserError(f"{source} has {len(names)} names but the model has {num_classes} classes")
        return names
    own = [str(n) for n in checkpoint_names] if isinstance(checkpoint_names, (list, tuple)) else None
    if own is not None and len(own) != num_classes:
        own = None  # names that do not match the classifier are not trusted
    if num_classes == IMAGENET_CLASSES and (own is None or _looks_like_wordnet_ids(own)):
        return imagenet_class_names()
    if own is not None:
        return own
    return [f"class {i}" for i in range(num_classes)]


# --- the classifier -----------------------------------------------------------------------------------------------


Prediction = tuple[str, int, float]  # (class name, class index, probability in [0, 1])


class Classifier:
    """A model ready for prediction with its preprocessing and class names; build it with `load_classifier`."""

    def __init__(self, model: nn.Module, *, arch: str, class_names: list[str], preprocessing: Preprocessing,
                 device: torch.device, precision: str, predictor=None, checkpoint: Path | None = None,
                 weights_used: str | None = None, quantized: bool = False):
        from image_classification.data.transforms import val_transform

        self.model = model
        self.arch = arch
        self.class_names = class_names
        self.num_classes = len(class_names)
        self.preprocessing = preprocessing
        self.device = device
        self.precision = precision
        self.checkpoint = checkpoint
        self.weights_used = weights_used
        self.quantized = quantized
        self.fast = predictor is not None
        self._predictor = predictor
        self.transform = val_transform(preprocessing.image_size, crop_pct=preprocessing.crop_pct,
                                       interpolation=preprocessing.interpolation)
        self._mean = torch.tensor([255.0 * m for m in preprocessing.mean], device=device).view(1, 3, 1, 1)
        self._inv_std = torch.tensor([1.0 / (255.0 * s) for s in preprocessing.std], device=device).view(1, 3, 1, 1)

    # preprocessing
    def load_image(self, image) -> torch.Tensor:
        """A path or a PIL image -> the uint8 CHW crop (raises OSError/ValueError etc. for unreadable files)."""
        from PIL import Image

        from image_classification.data.folder import read_rgb

        if isinstance(image, Image.Image):
            image = image.convert("RGB")
        else:
            image = read_rgb(os.fspath(image))
        return self.transform(image)

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW (any device) -> normalised float32 NCHW on the model's device."""
        batch = batch.to(self.device, non_blocking=True)
        return batch.float().sub_(self._mean).mul_(self._inv_std)

    # inference
    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Float32 logits of a uint8 NCHW batch of crops (as `load_image` returns them, stacked)."""
        from .evaluate import autocast_context

        images = self.normalise(batch)
        if self._predictor is not None:
            return self._predictor(images).float()
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(self.device, self.precision):
            return self.model(images).float()

    def check_topk(self, topk: int) -> int:
        if topk < 1:
            raise UserError(f"topk must be at least 1, got {topk}")
        if topk > self.num_classes:
            raise UserError(f"topk {topk} is more than the model's {self.num_classes} classes: "
                            f"ask for at most {self.num_classes}")
        return topk

    def predict_batch(self, batch: torch.Tensor, topk: int = DEFAULT_TOPK) -> list[list[Prediction]]:
        topk = self.check_topk(topk)
        probs = torch.softmax(self.logits(batch), dim=1)
        values, indices = probs.topk(topk, dim=1)
        values, indices = values.cpu().tolist(), indices.cpu().tolist()
        return [[(self.class_names[i], i, p) for p, i in zip(vs, ix)] for vs, ix in zip(values, indices)]

    def predict(self, images, topk: int = DEFAULT_TOPK, batch_size: int = DEFAULT_BATCH) -> list[list[Prediction]]:
        """Top-k (class name, index, probability) for each path or PIL image, most probable first.

        A single path or image is accepted too (a list of one result comes back). An unreadable file raises
        UserError naming it; the CLI reads images itself to skip those instead.
        """
        from PIL import Image

        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        images = list(images)
        self.check_topk(topk)
        out: list[list[Prediction]] = []
        for start in range(0, len(images), batch_size):
            crops = []
            for item in images[start:start + batch_size]:
                try:
                    crops.append(self.load_image(item))
                except Exception as exc:  # PIL raises many types for truncated or foreign files
                    raise UserError(f"cannot read {item}: {image_error_reason(exc, item)}") from None
            out += self.predict_batch(torch.stack(crops), topk)
        return out

    def info(self) -> dict:
        return {"arch": self.arch, "num_classes": self.num_classes, "device": str(self.device),
                "precision": self.precision, "fast": self.fast, "checkpoint": str(self.checkpoint) if self.checkpoint
                else None, "weights_used": self.weights_used, "preprocessing": self.preprocessing.as_dict()}


def image_error_reason(exc: BaseException, path=None) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnidentifiedImageError):
        if isinstance(path, (str, os.PathLike)) and os.path.isfile(path) and os.path.getsize(path) == 0:
            return "empty file"
        return "not an image (or a format PIL cannot decode)"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _resolve_device(device) -> torch.device:
    device = torch.device(device) if not isinstance(device, torch.device) else device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("no CUDA device is available: run on the CPU (--cpu)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def load_classifier(
    arch: str | None = None,
    weights: str | os.PathLike | None = None,
    *,
    device,
    weights_kind: str = "auto",
    pretrained: bool = False,
    image_size: int | None = None,
    crop_pct: float | None = None,
    labels=None,
    interpolation: str | None = None,
    precision: str | None = None,
    fast: bool | None = None,
    compile: bool = True,
    batch_size: int | None = None,
    num_classes: int | None = None,
    model_kwargs: dict | None = None,
    warn=None,
    restore_quantizers: QuantizerRestorer | None = None,
) -> Classifier:
    """Build `arch` (or the architecture the checkpoint names) with the weights of `weights` (any layout the loader
    reads) or, with `pretrained`, the published weights from the torch hub cache.

    weights_kind: auto (EMA when the checkpoint has it), ema or raw. The class count is the checkpoint's
    `num_classes`, else its classifier's width. Preprocessing: the checkpoint's `model_cfg`, else the registry's
    metadata; `image_size`, `crop_pct` and `interpolation` override. `labels`: a file or a list of names.
    precision: "fp32" or "fp16" (autocast; default on CUDA; refused on CPU). fast (default: on CUDA): the inference
    fast path (`inference.fast.fast_predictor`: BN folded, fp16 weights, channels_last, torch.compile unless
    `compile` is False, a CUDA graph for `batch_size` images; smaller batches are padded into it).
    `num_classes` is used where the checkpoint does not record its class count (a checkpoint that records another
    is an error); `model_kwargs` (upstream's model flags: bn_epsilon, trt, ...) go to the model's construction over
    the checkpoint's own. warn: where a warning line goes (stderr). `restore_quantizers`
    (quantization.state's) lets `weights` be an INT8-quantized checkpoint; without it one is refused. On a GPU the
    caller loads modelopt's CUDA kernels before the first forward of a quantized classifier (`quantized`).
    """
    from image_classification.models.loading import load_checkpoint_model

    device = _resolve_device(device)
    precision = precision or ("fp16" if device.type == "cuda" else "fp32")
    if precision not in ("fp16", "fp32"):
        raise UserError(f"precision must be fp16 (AMP) or fp32, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise UserError("AMP (fp16 autocast) needs a GPU: use FP32 on the CPU (--precision FP32)")
    if weights is None and not pretrained:
        raise UserError("no weights given: pass --weights CHECKPOINT (or --pretrained for the published weights)")
    loaded = load_checkpoint_model(weights, arch, weights=weights_kind, pretrained=pretrained, num_classes=num_classes,
                                   model_kwargs=model_kwargs, num_classes_flag="--num_classes",
                                   restore_quantizers=restore_quantizers)
    model, info, num_classes = loaded.model, loaded.info, loaded.num_classes
    preprocessing = loaded.preprocessing.with_overrides(image_size=image_size, crop_pct=crop_pct,
                                                        interpolation=interpolation)
    warning = loaded.unrecorded_preprocessing_warning("--image-size")
    if warning and image_size is None:
        (warn or _stderr)(warning)
    class_names = resolve_class_names(num_classes, loaded.class_names, labels)
    path, which = loaded.checkpoint, loaded.weights_used

    predictor = None
    fast = device.type == "cuda" if fast is None else fast
    # The fast path folds BatchNorm into the weights, which an INT8 model's ranges were calibrated without. A recorded
    # quantization means the quantizers were restored: without a restorer the loader has refused the file.
    quantized = loaded.quantization is not None
    fast = fast and not quantized
    if device.type == "cuda":
        model.to(device)
        if fast:
            # The GPU fast path; only imported on a GPU. Its one line (compile time) goes to stderr: stdout is results.
            from .fast import fast_predictor

            predictor = fast_predictor(model, device=device, precision=precision, batch_size=batch_size or 1,
                                       image_size=preprocessing.image_size, compile=compile,
                                       log=_stderr)
        else:
            model.to(memory_format=torch.channels_last)
    return Classifier(model, arch=info.name, class_names=class_names, preprocessing=preprocessing, device=device,
                      precision=precision, predictor=predictor, checkpoint=path, weights_used=which,
                      quantized=quantized)


# --- inputs -------------------------------------------------------------------------------------------------------


def _is_image_name(name: str) -> bool:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return name.lower().endswith(IMG_EXTENSIONS)


def _images_in(folder: str) -> list[str]:
    from image_classification.data.folder import walk_without_loops

    found = []
    for dirpath, files in walk_without_loops(folder):
        found += [os.path.join(dirpath, f) for f in files if _is_image_name(f)]
    return sorted(found)


def expand_inputs(items: Iterable[str]) -> list[str]:
    """Files as given (tried even without an image extension); directories: every image file inside, sorted,
    recursively; glob patterns: the image files (and directories) they match. A directory or a pattern that
    yields no image is an error; a named file that does not exist is left for the reader to report."""
    out: list[str] = []
    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = _images_in(item)
            if not found:
                raise UserError(f"no images in {item} (looked for image files, recursively)")
        elif not os.path.exists(item) and _GLOB_CHARS & set(item):
            found = []
            for match in sorted(glob.glob(item, recursive=True)):
                if os.path.isdir(match):
                    found += _images_in(match)
                elif _is_image_name(match):
                    found.append(match)
            if not found:
                raise UserError(f"no image matches {item}")
        else:
            found = [item]
        out += found
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


# --- many files, in batches ---------------------------------------------------------------------------------------


def _read_all(classifier: Classifier, paths: list[str], pool: ThreadPoolExecutor):
    def read(path):
        try:
            return path, classifier.load_image(path), None
        except Exception as exc:  # PIL raises many types for truncated or foreign files
            return path, None, image_error_reason(exc, path)

    return list(pool.map(read, paths))


def classify_paths(classifier: Classifier, paths: list[str], *, topk: int, batch_size: int,
                   on_result, on_error) -> int:
    """Classify `paths` in batches, calling on_result(path, predictions) or on_error(path, reason); returns the
    number of unreadable images."""
    errors = 0
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(paths), batch_size):
            read = _read_all(classifier, paths[start:start + batch_size], pool)
            good = [(path, crop) for path, crop, _ in read if crop is not None]
            for path, _, reason in read:
                if reason is not None:
                    errors += 1
                    on_error(path, reason)
            if good:
                results = classifier.predict_batch(torch.stack([c for _, c in good]), topk)
                for (path, _), preds in zip(good, results):
                    on_result(path, preds)
    return errors


def format_text(path: str, predictions: list[Prediction]) -> str:
    return "\n".join([path] + [f"{name}: {100.0 * p:.1f}%" for name, _, p in predictions])
