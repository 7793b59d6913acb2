"""Send an ImageFolder through a Triton server and check what comes back (what `triton/client.py` does).

Images get the model's own preprocessing (the `preprocessing` parameter deploy.py writes into config.pbtxt, else
the checkpoint's), go out in batches over HTTP or gRPC (tritonclient), and the logits that return are scored
(top-1, top-5). With the checkpoint at hand the same input tensors also run through PyTorch here, and the report
says how often the two agree and how far their logits are apart: a deployment that computes something else
shows up, where upstream's kit compared nothing (its conversion tolerance was 100).
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common.atomic_files import atomic_write
from common.cli_errors import UserError

from . import model_config as mc

if TYPE_CHECKING:
    from image_classification.models.checkpoint import QuantizerRestorer
    from image_classification.preprocessing import Preprocessing

PROTOCOLS = ("http", "grpc")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16}
PROGRESS_EVERY_S = 10.0


def import_tritonclient(protocol: str):
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol must be http or grpc, got {protocol!r}")
    try:
        if protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
    except ImportError as exc:
        raise UserError(f"tritonclient is not installed ({exc}): pip install 'tritonclient[all]' (the project's "
                        "[triton] extra)") from None
    return module


def normalise_url(url: str | None, protocol: str) -> str:
    """host:port as tritonclient wants it (no scheme); the protocol's default port where none is given."""
    url = (url or "127.0.0.1").strip()
    for scheme in ("http://", "https://", "grpc://"):
        if url.startswith(scheme):
            url = url[len(scheme):]
    url = url.rstrip("/")
    host, sep, port = url.rpartition(":")
    if not sep or not port.isdigit() or "]" in port:
        return f"{url}:{DEFAULT_PORTS[protocol]}"
    return url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class ModelInterface:
    name: str
    input_name: str
    datatype: str
    dims: list[int]
    output_name: str
    num_classes: int
    max_batch_size: int
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        return int(self.dims[-1])

    @property
    def preprocessing(self) -> dict | None:
        text = self.parameters.get(mc.PREPROCESSING_PARAMETER)
        return json.loads(text) if text else None


class TritonClient:
    """A connection to one model on one server, over HTTP or gRPC."""

    def __init__(self, url: str | None, protocol: str, model: str, timeout: float = 60.0):
        self.protocol = protocol
        self.module = import_tritonclient(protocol)
        self.url = normalise_url(url, protocol)
        self.model = model
        try:
            if protocol == "http":
                self.client = self.module.InferenceServerClient(self.url, connection_timeout=timeout,
                                                                network_timeout=timeout)
            else:
                self.client = self.module.InferenceServerClient(self.url)
        except Exception as exc:  # tritonclient raises plain exceptions for a malformed address
            raise UserError(f"cannot connect to {self.url}: {_first_line(exc)}") from None
        self.interface = self._interface()

    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _loaded_models(self) -> list[str]:
        try:
            index = self.client.get_model_repository_index(**({"as_json": True} if self.protocol == "grpc" else {}))
        except Exception:  # PyTriton guards the repository API with a token: then the list stays unknown
            return []
        entries = index.get("models", []) if isinstance(index, dict) else index
        return sorted({e.get("name") for e in entries if e.get("state", "READY") == "READY" and e.get("name")})

    def _interface(self) -> ModelInterface:
        try:
            live = self.client.is_server_live()
        except Exception as exc:  # connection refused, DNS, TLS: any of them means nobody answers there
            raise UserError(f"no Triton server answers at {self.url} ({self.protocol}: {_first_line(exc)}): start "
                            f"one (triton/serve.py) or fix --url/--protocol") from None
        if not live:
            raise UserError(f"the Triton server at {self.url} is not live")
        try:
            ready = self.client.is_model_ready(self.model)
        except Exception:  # gRPC raises for an unknown model where HTTP answers False
            ready = False
        if not ready:
            loaded = self._loaded_models()
            hint = f"; loaded: {', '.join(loaded)}" if loaded else ""
            raise UserError(f"model {self.model!r} is not loaded on the Triton server at {self.url}{hint}")
        json_kw = {"as_json": True} if self.protocol == "grpc" else {}
        metadata = self.client.get_model_metadata(self.model, **json_kw)
        config = self.client.get_model_config(self.model, **json_kw)
        config = config.get("config", config)  # gRPC wraps the configuration in {"config": ...}
        inputs, outputs = metadata.get("inputs", []), metadata.get("outputs", [])
        if len(inputs) != 1 or not outputs:
            raise UserError(f"{self.model} has {len(inputs)} inputs and {len(outputs)} outputs; an image classifier "
                            "has one input (N, 3, H, W) and one output (N, classes)")
        shape = [int(d) for d in inputs[0]["shape"]]
        out_shape = [int(d) for d in outputs[0]["shape"]]
        max_batch = int(config.get("max_batch_size", 0) or 0)
        if max_batch < 1:
            raise UserError(f"{self.model} does not batch (max_batch_size 0): serve it with batching enabled")
        dims, out_dims = shape[1:], out_shape[1:]
        if len(dims) != 3 or dims[0] != 3 or len(out_dims) != 1:
            raise UserError(f"{self.model} takes {shape} and returns {out_shape}: expected (N, 3, H, W) images and "
                            f"(N, classes) scores")
        if inputs[0]["datatype"] not in NUMPY_TYPES:
            raise UserError(f"{self.model} takes {inputs[0]['datatype']} input; this client sends FP32 or FP16")
        parameters = {k: (v.get("string_value", "") if isinstance(v, dict) else str(v))
                      for k, v in (config.get("parameters") or {}).items()}
        return ModelInterface(name=self.model, input_name=inputs[0]["name"], datatype=inputs[0]["datatype"],
                              dims=dims, output_name=outputs[0]["name"], num_classes=out_dims[0],
                              max_batch_size=max_batch, parameters=parameters)

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits (N, classes) as float32 for normalised images (N, 3, H, W)."""
        spec = self.interface
        batch = np.ascontiguousarray(images, dtype=NUMPY_TYPES[spec.datatype])
        request = self.module.InferInput(spec.input_name, list(batch.shape), spec.datatype)
        request.set_data_from_numpy(batch)
        output = self.module.InferRequestedOutput(spec.output_name)
        try:
            result = self.client.infer(self.model, [request], outputs=[output])
        except Exception as exc:  # InferenceServerException, or a dropped connection
            raise UserError(f"inference on {self.model} at {self.url} failed: {_first_line(exc)}") from None
        return result.as_numpy(spec.output_name).astype(np.float32)


# --- the data -----------------------------------------------------------------------------------------------------


def image_folder(data: str | os.PathLike) -> tuple[Path, list[str], list[tuple[str, int]]]:
    """(folder, class names, [(image path, class index)]) of an ImageFolder (or a root holding val/)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from image_classification.inference.validate import folder_classes, resolve_image_folder

    root, split = resolve_image_folder(data)
    classes = folder_classes(root, split)
    samples = []
    for index, name in enumerate(classes):
        for dirpath, dirnames, files in os.walk(root / split / name, followlinks=True):
            dirnames.sort()
            samples += [(os.path.join(dirpath, f), index) for f in sorted(files) if f.lower().endswith(IMG_EXTENSIONS)]
    if not samples:
        raise UserError(f"no images in {root / split}")
    return root / split, classes, samples


def class_index_map(folder_classes: list[str], model_classes: list[str] | None, num_classes: int) -> list[int]:
    """The model's class index for each folder class: by name where the model's names cover the folders', else by
    position (ImageFolder's sorted order, the one training used)."""
    if model_classes and all(c in model_classes for c in folder_classes):
        return [model_classes.index(c) for c in folder_classes]
    if len(folder_classes) == num_classes:
        return list(range(num_classes))
    raise UserError(f"the data has {len(folder_classes)} classes and the model {num_classes}, and the class names "
                    "do not match: pass the validation folder the model was trained for")


class Preprocessor:
    """Resize (shorter side), centre crop, normalise: images -> float32 (N, 3, H, W) as the model was trained, with
    the project's own preprocessing description (`Preprocessing`) in numpy."""

    def __init__(self, spec: Preprocessing):
        from image_classification.data.transforms import val_transform

        self.spec = spec
        self._transform = val_transform(spec.image_size, crop_pct=spec.crop_pct, interpolation=spec.interpolation)
        # The same arithmetic as the project's Classifier: (x - 255 mean) / (255 std), in float32.
        self._mean = np.array([255.0 * m for m in spec.mean], dtype=np.float32).reshape(1, 3, 1, 1)
        self._inv_std = np.array([1.0 / (255.0 * s) for s in spec.std], dtype=np.float32).reshape(1, 3, 1, 1)

    @classmethod
    def from_dict(cls, cfg: dict) -> Preprocessor:
        from image_classification.preprocessing import Preprocessing

        try:
            spec = Preprocessing(image_size=int(cfg["image_size"]), crop_pct=float(cfg["crop_pct"]),
                                         interpolation=str(cfg["interpolation"]), mean=tuple(cfg["mean"]),
                                         std=tuple(cfg["std"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"the model's preprocessing parameter is incomplete ({exc}): redeploy it with "
                            "deploy.py, or pass --weights") from None
        return cls(spec)

    def crop(self, path: str) -> np.ndarray:
        from image_classification.data.folder import read_rgb

        return self._transform(read_rgb(path)).numpy()

    def normalise(self, crops: np.ndarray) -> np.ndarray:
        return (crops.astype(np.float32) - self._mean) * self._inv_std

    def as_dict(self) -> dict:
        spec = self.spec
        return {"image_size": spec.image_size, "crop_pct": spec.crop_pct, "interpolation": spec.interpolation,
                "mean": list(spec.mean), "std": list(spec.std)}


# --- scoring ------------------------------------------------------------------------------------------------------


@dataclass
class Score:
    top1: int = 0
    top5: int = 0
    total: int = 0

    def add(self, logits: np.ndarray, labels: np.ndarray, k: int) -> None:
        order = np.argsort(-logits, axis=1)[:, :k]
        self.top1 += int((order[:, 0] == labels).sum())
        self.top5 += int((order == labels[:, None]).any(axis=1).sum())
        self.total += len(labels)

    def as_dict(self) -> dict:
        n = max(1, self.total)
        return {"top1": 100.0 * self.top1 / n, "top5": 100.0 * self.top5 / n, "images": self.total}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class ClientOptions:
    data: str
    model: str
    url: str | None = None
    protocol: str = "http"
    weights: str | None = None
    labels: str | None = None
    batch_size: int = 16
    limit: int | None = None
    dump: str | None = None
    workers: int = 4
    timeout: float = 60.0
    log: object = field(default=print, repr=False)
    # quantization.state.restore_quantizers, from the command line above the quantization package: lets the
    # checkpoint be INT8-quantized (without it one is refused).
    restore_quantizers: QuantizerRestorer | None = field(default=None, repr=False)


def _local_model(options: ClientOptions):
    if options.weights is None:
        return None
    from image_classification.inference.classify import load_classifier

    return load_classifier(None, options.weights, device="cpu", precision="fp32", fast=False, labels=options.labels,
                           restore_quantizers=options.restore_quantizers)


def run_client(options: ClientOptions) -> dict:
    """Score the ImageFolder through the server (and, with weights, locally); returns the report (also dumped)."""
    import torch

    if options.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.limit is not None and options.limit < 1:
        raise UserError(f"--limit must be at least 1, got {options.limit}")
    folder, classes, samples = image_folder(options.data)
    local = _local_model(options)
    with TritonClient(options.url, options.protocol, options.model, options.timeout) as server:
        spec = server.interface
        if local is not None and local.num_classes != spec.num_classes:
            raise UserError(f"{options.weights} has {local.num_classes} classes and the served {spec.name} "
                            f"{spec.num_classes}: pass the checkpoint that was deployed")
        if spec.preprocessing is not None:
            prep = Preprocessor.from_dict(spec.preprocessing)
        elif local is not None:
            prep = Preprocessor(local.preprocessing)
        else:
            raise UserError(f"{spec.name} does not publish its preprocessing (no '{mc.PREPROCESSING_PARAMETER}' "
                            "parameter, as PyTriton-served models): pass --weights CHECKPOINT")
        if prep.spec.image_size != spec.image_size:
            raise UserError(f"the preprocessing crops {prep.spec.image_size} px, and {spec.name} takes "
                            f"{spec.image_size} px")
        names = local.class_names if local is not None else None
        if names is None and options.labels:
            from image_classification.inference.classify import read_labels

            names = read_labels(options.labels)
        to_model = class_index_map(classes, names, spec.num_classes)
        if options.limit is not None:
            # Every class keeps a share: a plain prefix of the sorted list would hold the first classes only.
            step = max(1, len(samples) // options.limit)
            samples = samples[::step][: options.limit]
        batch = min(options.batch_size, spec.max_batch_size)
        k = min(5, spec.num_classes)
        served, scored_local = Score(), Score()
        agree, worst = 0, 0.0
        predictions = []
        options.log(f"=> {len(samples)} images from {folder} through {spec.name} at {server.url} ({options.protocol}"
                    f"), batch {batch}, {spec.datatype}")
        began = last_report = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
            for start in range(0, len(samples), batch):
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY_S and start:
                    rate = start / (now - began)
                    options.log(f"   {start}/{len(samples)} images, {rate:.0f} images/s, ETA "
                                f"{(len(samples) - start) / rate:.0f} s")
                    last_report = now
                chunk = samples[start:start + batch]
                try:
                    crops = np.stack(list(pool.map(prep.crop, [p for p, _ in chunk])))
                except Exception as exc:  # PIL raises many types for unreadable files
                    raise UserError(f"cannot read an image of {folder}: {_first_line(exc)}") from None
                images = prep.normalise(crops)
                labels = np.array([to_model[c] for _, c in chunk])
                logits = server.infer(images)
                served.add(logits, labels, k)
                local_logits = None
                if local is not None:
                    with torch.inference_mode():
                        local_logits = local.model(torch.from_numpy(images)).float().numpy()
                    scored_local.add(local_logits, labels, k)
                    agree += int((local_logits.argmax(1) == logits.argmax(1)).sum())
                    worst = max(worst, float(np.abs(local_logits - logits).max()))
                probs = softmax(logits)
                for row, (path, cls) in enumerate(chunk):
                    top = np.argsort(-probs[row])[:k]
                    entry = {"image": path, "label": int(to_model[cls]), "label_name": classes[cls],
                             "top5": [{"index": int(i), "class": names[i] if names else str(i),
                                       "probability": float(probs[row, i])} for i in top]}
                    if local_logits is not None:
                        entry["local_top1"] = int(local_logits[row].argmax())
                    predictions.append(entry)
    report = {"server": {"url": server.url, "protocol": options.protocol, "model": spec.name,
                         "datatype": spec.datatype, **served.as_dict()},
              "data": str(folder), "preprocessing": prep.as_dict(), "batch_size": batch}
    options.log(f"   server: top-1 {report['server']['top1']:.2f}%  top-5 {report['server']['top5']:.2f}%")
    if local is not None:
        report["local"] = {"weights": str(options.weights), "device": "cpu", "precision": "fp32",
                           **scored_local.as_dict()}
        report["agreement"] = {"top1": 100.0 * agree / max(1, served.total), "same_top1": agree,
                               "max_abs_logit_difference": worst}
        options.log(f"   local PyTorch (cpu, fp32): top-1 {report['local']['top1']:.2f}%  top-5 "
                    f"{report['local']['top5']:.2f}%")
        options.log(f"   agreement: top-1 {report['agreement']['top1']:.2f}% ({agree}/{served.total}), max |logit "
                    f"difference| {worst:.3g}")
    report["predictions"] = predictions
    if options.dump:
        with atomic_write(options.dump, "w") as f:
            json.dump(report, f, indent=1)
        options.log(f"   labelled predictions: {options.dump}")
    return report
