"""Write a complete Triton model repository entry for one trained classifier (what `triton/deploy.py` does).

    <repository>/<name>/config.pbtxt      onnxruntime (TensorRT accelerator option), tensorrt or python backend
    <repository>/<name>/labels.txt        class names, one per line (the output's label_filename)
    <repository>/<name>/1/model.onnx      --format onnx: dynamic batch, checked against PyTorch with onnxruntime
    <repository>/<name>/1/model.plan      --format tensorrt: a TensorRT engine (needs TensorRT and a GPU)
    <repository>/<name>/1/model.py       --format python: the project's fast inference path ...
    <repository>/<name>/1/model.pth.tar   ... and the weights it loads

The entry is built in a scratch folder beside the repository and moved into place whole, so a failed export
leaves nothing half-written. An existing, non-empty repository is refused unless `force`; even then only
`<repository>/<name>/` is replaced, and only when it is a Triton model folder (it holds a config.pbtxt).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from common.cli_errors import UserError

from . import model_config as mc
from .python_backend import CHECKPOINT_PARAMETER, COMPILE_PARAMETER, PRECISION_PARAMETER

if TYPE_CHECKING:
    from image_classification.models.checkpoint import QuantizerRestorer

VERSION = "1"
PYTHON_CHECKPOINT = "model.pth.tar"
PYTHON_MODEL_SOURCE = '''"""Triton Python-backend model written by triton/deploy.py.

It runs the project's fast inference path on the weights beside this file (model.pth.tar). The project must be
installed in the Python environment of Triton's python backend, e.g. `pip install nvidia-image-classification`
or `pip install /path/to/checkout` inside the tritonserver image (see docker/Dockerfile.triton).
"""
from image_classification.serving.python_backend import TritonPythonModel  # noqa: F401
'''
DEFAULT_OPSET = 17
_UMASK = os.umask(0)
os.umask(_UMASK)
_DIR_MODE = 0o777 & ~_UMASK


@dataclass
class DeployOptions:
    repository: Path
    format: str = "onnx"
    arch: str | None = None
    weights: str | None = None
    pretrained: bool = False
    weights_kind: str = "auto"
    name: str | None = None
    precision: str | None = None  # default: fp16 for GPU instances, fp32 for CPU ones
    instance_kind: str = "gpu"
    max_batch_size: int = 64
    instances: int = 1
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 100
    accelerator: str = "tensorrt"
    cuda_graph: bool = False
    opset: int = DEFAULT_OPSET
    verify: bool = True
    compile: bool = True
    force: bool = False
    log: object = field(default=print, repr=False)
    # quantization.state.restore_quantizers, from the command line above the quantization package: lets the
    # checkpoint be INT8-quantized (without it one is refused).
    restore_quantizers: QuantizerRestorer | None = field(default=None, repr=False)


@dataclass
class DeployResult:
    model_dir: Path
    spec: mc.ServingSpec
    files: list[str]


# --- the repository folder ----------------------------------------------------------------------------------------


def _is_model_dir(path: Path) -> bool:
    return (path / "config.pbtxt").is_file()


def check_repository(repository: Path, name: str | None, force: bool) -> None:
    """Refuse what would lose user files: a non-empty repository without --force, and with it a `<name>` entry
    that is not a Triton model folder (`name` None: not known yet, that part is checked later)."""
    if repository.exists() and not repository.is_dir():
        raise UserError(f"model repository {repository} exists and is not a directory: pass a folder path")
    if not repository.is_dir():
        return
    entries = sorted(p.name for p in repository.iterdir())
    if not entries:
        return
    if not force:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        entry = f"{name}/" if name else "the model's folder"
        raise UserError(f"model repository {repository} exists and is not empty ({shown}): pass --force to write "
                        f"{entry} into it (only that folder is replaced), or choose another --repository")
    if name is None:
        return
    target = repository / name
    if target.exists() and not (target.is_dir() and (_is_model_dir(target) or not any(target.iterdir()))):
        raise UserError(f"{target} exists and is not a Triton model folder (no config.pbtxt): move it away; "
                        f"--force only replaces model folders")


def _install(staged: Path, repository: Path, name: str) -> Path:
    """Move the finished entry into the repository; an older entry of the same name goes only once the new one is
    in place."""
    repository.mkdir(parents=True, exist_ok=True)
    target = repository / name
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=repository.parent))
        os.replace(target, old / name)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


# --- the model files ----------------------------------------------------------------------------------------------


def _onnx_bytes(classifier, options: DeployOptions, *, half_graph: bool) -> bytes:
    import torch

    from image_classification.export import onnx as onnx_export

    prep = classifier.preprocessing
    device = "cuda" if half_graph and torch.cuda.is_available() else "cpu"
    precision = "fp16" if half_graph else "fp32"
    model = onnx_export.prepare_model(classifier.model, device=device, precision=precision)
    metadata = {"mean": list(prep.mean), "std": list(prep.std), "crop_pct": prep.crop_pct,
                "interpolation": prep.interpolation, "class_names": list(classifier.class_names),
                "weights": classifier.weights_used}
    if classifier.checkpoint is not None:
        metadata["source_checkpoint"] = Path(classifier.checkpoint).name
    data = onnx_export.export_onnx_bytes(model, image_size=prep.image_size, opset=options.opset, batch_size=2,
                                         dynamic_batch=True, device=device, precision=precision, metadata=metadata)
    if options.verify:
        if onnx_export.onnxruntime_available():
            diff = onnx_export.verify_onnx(data, model, image_size=prep.image_size, batch_sizes=(1, 3))
            options.log(f"   ONNX checked against PyTorch with onnxruntime (batch 1 and 3): max abs difference "
                        f"{diff:.3g}")
        else:
            print("note: onnxruntime is not installed: the ONNX file was not checked against PyTorch "
                  "(pip install onnxruntime)", file=sys.stderr, flush=True)
    return data


def _write_onnx(classifier, options: DeployOptions, folder: Path, half_graph: bool) -> None:
    (folder / mc.MODEL_FILES["onnx"]).write_bytes(_onnx_bytes(classifier, options, half_graph=half_graph))


def _write_tensorrt(classifier, options: DeployOptions, folder: Path) -> None:
    from image_classification.export.tensorrt import build_engine

    onnx_path = folder / ".model.onnx"
    onnx_path.write_bytes(_onnx_bytes(classifier, options, half_graph=False))
    try:
        opt = max(options.preferred_batch_sizes) if options.preferred_batch_sizes else options.max_batch_size
        build_engine(onnx_path, folder / mc.MODEL_FILES["tensorrt"], fp16=options.precision == "fp16",
                     max_batch=options.max_batch_size, opt_batch=opt, image_size=classifier.preprocessing.image_size)
    finally:
        onnx_path.unlink(missing_ok=True)


def _write_python(classifier, options: DeployOptions, folder: Path) -> None:
    import torch

    from image_classification.models.checkpoint import is_state_dict, read_checkpoint

    raw = read_checkpoint(classifier.checkpoint) if classifier.checkpoint is not None else {}
    kwargs = {} if is_state_dict(raw) else raw.get("model_kwargs")
    prep = classifier.preprocessing
    checkpoint = {
        "arch": classifier.arch,
        "num_classes": classifier.num_classes,
        "class_names": list(classifier.class_names),
        "model_kwargs": dict(kwargs) if isinstance(kwargs, dict) else {},
        "model_cfg": {"input_size": (3, prep.image_size, prep.image_size), "crop_pct": prep.crop_pct,
                      "interpolation": prep.interpolation, "mean": tuple(prep.mean), "std": tuple(prep.std)},
        "state_dict": {k: v.detach().cpu() for k, v in classifier.model.state_dict().items()},
    }
    torch.save(checkpoint, folder / PYTHON_CHECKPOINT)
    (folder / mc.MODEL_FILES["python"]).write_text(PYTHON_MODEL_SOURCE, encoding="utf-8")


# --- the whole entry ----------------------------------------------------------------------------------------------


def resolve_precision(precision: str | None, instance_kind: str) -> str:
    precision = precision or ("fp16" if instance_kind == "gpu" else "fp32")
    if precision == "fp16" and instance_kind == "cpu":
        raise UserError("fp16 serving needs GPU instances: use --precision fp32 with --instance-kind cpu")
    return precision


def _early_checks(options: DeployOptions) -> None:
    """Everything that can be refused before a model is loaded or a file is written."""
    if options.format not in mc.FORMATS:
        raise UserError(f"--format must be one of {', '.join(mc.FORMATS)}, got {options.format!r}")
    if options.weights is None and not options.pretrained:
        raise UserError("no weights given: pass --weights CHECKPOINT (or --pretrained for the published weights)")
    if options.weights is not None and options.pretrained:
        raise UserError("give either --weights or --pretrained, not both")
    if options.format == "tensorrt":
        import torch

        from image_classification.export.tensorrt import import_tensorrt

        import_tensorrt()
        if not torch.cuda.is_available():
            raise UserError("--format tensorrt builds the engine on this machine's GPU, and PyTorch sees none: "
                            "run deploy.py on the GPU machine (or in the NGC container) that will serve it")


def deploy(options: DeployOptions) -> DeployResult:
    """Load the weights, export them in `options.format` and write `<repository>/<name>/`."""
    from image_classification.inference.classify import load_classifier

    log = options.log
    options.precision = resolve_precision(options.precision, options.instance_kind)
    _early_checks(options)
    if options.name is not None:
        mc.check_model_name(options.name)
    # The configuration is checked once with placeholder sizes, so a bad flag fails before the model loads.
    probe = dict(name=options.name or "model", format=options.format, max_batch_size=options.max_batch_size,
                 instances=options.instances, kind=options.instance_kind, precision=options.precision,
                 accelerator=options.accelerator, preferred_batch_sizes=tuple(options.preferred_batch_sizes),
                 max_queue_delay_us=options.max_queue_delay_us, cuda_graph=options.cuda_graph)
    mc.ServingSpec(image_size=1, num_classes=1, **probe)
    repository = Path(options.repository)
    check_repository(repository, options.name, options.force)

    classifier = load_classifier(options.arch, options.weights, device="cpu", pretrained=options.pretrained,
                                 precision="fp32", fast=False, weights_kind=options.weights_kind,
                                 restore_quantizers=options.restore_quantizers)
    name = options.name or classifier.arch
    check_repository(repository, mc.check_model_name(name), options.force)
    prep = classifier.preprocessing
    # A half ONNX graph only where nothing else would compute in fp16 (ONNX Runtime without TensorRT on a GPU).
    half_graph = (options.format == "onnx" and options.precision == "fp16" and options.accelerator == "none")
    parameters = {mc.PREPROCESSING_PARAMETER: mc.preprocessing_parameter(
        {"image_size": prep.image_size, "resize_size": prep.resize_size, "crop_pct": prep.crop_pct,
         "interpolation": prep.interpolation, "mean": list(prep.mean), "std": list(prep.std)}),
        "architecture": classifier.arch}
    if options.format == "python":
        parameters |= {CHECKPOINT_PARAMETER: PYTHON_CHECKPOINT, PRECISION_PARAMETER: options.precision,
                       COMPILE_PARAMETER: "true" if options.compile else "false"}
    spec = mc.ServingSpec(image_size=prep.image_size, num_classes=classifier.num_classes,
                          io_precision="fp16" if half_graph else "fp32", parameters=parameters,
                          **(probe | {"name": name}))

    # Beside the repository, not in it (a polling Triton would try to load a half-written entry), and on the same
    # file system, so that moving it in is one rename.
    repository.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=repository.parent))
    try:
        os.chmod(staged, _DIR_MODE)  # mkdtemp's 0700 would hide the entry from a server running as another user
        version = staged / VERSION
        version.mkdir()
        log(f"=> exporting {classifier.arch} ({classifier.num_classes} classes, {prep.image_size} px) from "
            f"{classifier.checkpoint} for Triton's {mc.BACKENDS[options.format]} backend")
        if options.format == "onnx":
            _write_onnx(classifier, options, version, half_graph)
        elif options.format == "tensorrt":
            _write_tensorrt(classifier, options, version)
        else:
            _write_python(classifier, options, version)
        (staged / mc.LABELS_FILE).write_text("\n".join(classifier.class_names) + "\n", encoding="utf-8")
        (staged / "config.pbtxt").write_text(mc.to_pbtxt(mc.model_config(spec)), encoding="utf-8")
        files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
        target = _install(staged, repository, name)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return DeployResult(model_dir=target, spec=spec, files=files)


def describe(result: DeployResult) -> str:
    spec = result.spec
    accel = ""
    if spec.format == "onnx":
        accel = (f", TensorRT accelerator {spec.precision.upper()}" if spec.accelerator == "tensorrt"
                 and spec.kind == "gpu" else f", {spec.io_precision} graph")
    elif spec.format == "tensorrt":
        accel = f", {spec.precision} engine" + (", CUDA graphs" if spec.cuda_graph else "")
    else:
        accel = f", {spec.precision}"
    batching = f"max batch {spec.max_batch_size}"
    if spec.preferred_batch_sizes:
        batching += f", preferred {', '.join(map(str, sorted(set(spec.preferred_batch_sizes))))}"
    return (f"{result.model_dir}: {mc.BACKENDS[spec.format]} backend{accel}, {batching}, queue delay "
            f"{spec.max_queue_delay_us} us, {spec.instances} x {mc.KINDS[spec.kind]}; files: "
            f"{', '.join(result.files)}")
