"""triton/deploy.py on a model trained on the digits: the repository entries of each format (files, config, labels,
an ONNX model that onnxruntime runs at any batch size and that agrees with PyTorch, a Python-backend model that
answers batched requests), and the inputs it must refuse without touching the user's files."""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import REPO, assert_one_line_error, run_script
from tests.conftest import run_in_process as cli
from tests.triton.pbtxt import parse

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the project's [onnx] extra)")
pytest.importorskip("onnx", reason="onnx is not installed (the project's [onnx] extra)")

DEPLOY = REPO / "triton" / "deploy.py"
DIGITS = [str(d) for d in range(10)]


def load_script(path: Path):
    """A triton/ script as a module (the folder is not a package: `triton` is OpenAI Triton's name)."""
    spec = importlib.util.spec_from_file_location(f"triton_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def deploy_main():
    return load_script(DEPLOY).main


@pytest.fixture(scope="module")
def checkpoint(trained_digits) -> Path:
    return trained_digits[1] / "model_best.pth.tar"


@pytest.fixture(scope="module")
def classifier(checkpoint):
    from image_classification.inference.classify import load_classifier

    return load_classifier(None, checkpoint, device="cpu", precision="fp32", fast=False)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def val_batch(digits_root: Path, classifier, n: int) -> np.ndarray:
    paths = [sorted((digits_root / "val" / d).glob("*.jpg"))[0] for d in DIGITS][:n]
    crops = torch.stack([classifier.load_image(p) for p in paths])
    return classifier.normalise(crops).numpy()


def no_leftovers(repository: Path) -> None:
    leftovers = [p.name for p in repository.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers


def test_onnx_repository(capsys, deploy_main, checkpoint, classifier, digits_root, tmp_path):
    repo = tmp_path / "repo"
    result = cli(capsys, deploy_main, "--weights", checkpoint, "--repository", repo, "--format", "onnx",
                 "--instance-kind", "cpu", "--max-batch-size", 8, "--preferred-batch-sizes", 4, 8, "--instances", 2,
                 "--max-queue-delay-us", 50)
    assert result.returncode == 0, result.stderr
    assert "ONNX checked against PyTorch" in result.stdout
    model_dir = repo / "efficientnet-b0"
    assert files_under(repo) == {"efficientnet-b0/config.pbtxt", "efficientnet-b0/labels.txt",
                                 "efficientnet-b0/1/model.onnx"}
    no_leftovers(repo)

    config = parse((model_dir / "config.pbtxt").read_text())
    assert config["name"] == ["efficientnet-b0"] and config["backend"] == ["onnxruntime"]
    assert config["max_batch_size"] == [8]
    assert config["input"][0]["dims"] == [3, 32, 32] and config["output"][0]["dims"] == [10]
    assert config["output"][0]["label_filename"] == ["labels.txt"]
    assert config["dynamic_batching"] == [{"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": [50]}]
    assert config["instance_group"] == [{"count": [2], "kind": ["KIND_CPU"]}]
    assert "optimization" not in config  # no TensorRT accelerator on CPU instances
    prep = json.loads(config["parameters"]["preprocessing"]["string_value"][0])
    expected = classifier.preprocessing
    assert prep["image_size"] == expected.image_size == 32
    assert (prep["crop_pct"], prep["interpolation"]) == (expected.crop_pct, expected.interpolation)
    assert (model_dir / "labels.txt").read_text().splitlines() == classifier.class_names == DIGITS

    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "INPUT__0" and isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 32, 32]
    assert session.get_outputs()[0].name == "OUTPUT__0"
    for n in (1, 5):  # a dynamic batch: both sizes run, and agree with PyTorch
        images = val_batch(digits_root, classifier, n)
        (logits,) = session.run(None, {"INPUT__0": images})
        with torch.no_grad():
            reference = classifier.model(torch.from_numpy(images)).numpy()
        assert logits.shape == (n, 10)
        np.testing.assert_allclose(logits, reference, atol=1e-3)


def test_onnx_for_gpu_instances_asks_tensorrt_for_fp16(capsys, deploy_main, checkpoint, tmp_path):
    result = cli(capsys, deploy_main, "--weights", checkpoint, "--repository", tmp_path / "repo", "--model-name",
                 "digits", "--no-verify")
    assert result.returncode == 0, result.stderr
    config = parse((tmp_path / "repo" / "digits" / "config.pbtxt").read_text())
    assert config["name"] == ["digits"]
    assert config["instance_group"] == [{"count": [1], "kind": ["KIND_GPU"]}]
    assert config["max_batch_size"] == [64]
    (accelerator,) = config["optimization"][0]["execution_accelerators"][0]["gpu_execution_accelerator"]
    assert accelerator["name"] == ["tensorrt"] and accelerator["parameters"]["precision_mode"] == "FP16"
    assert config["input"][0]["data_type"] == ["TYPE_FP32"]  # the accelerator computes in fp16, the I/O stays fp32


class FakeTensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


def fake_backend_utils():
    """What Triton's python backend provides as triton_python_backend_utils, reduced to what our model calls."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor
    module.TritonError = lambda message: SimpleNamespace(message=message)
    module.InferenceResponse = lambda output_tensors, error=None: SimpleNamespace(outputs=output_tensors, error=error)
    module.get_input_tensor_by_name = lambda request, name: FakeTensor(name, request[name])
    return module


def test_python_repository(capsys, deploy_main, checkpoint, classifier, digits_root, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    result = cli(capsys, deploy_main, "--weights", checkpoint, "--repository", repo, "--format", "python",
                 "--instance-kind", "cpu", "--max-batch-size", 16, "--model-name", "digits-py")
    assert result.returncode == 0, result.stderr
    model_dir = repo / "digits-py"
    assert files_under(model_dir) == {"config.pbtxt", "labels.txt", "1/model.py", "1/model.pth.tar"}
    assert "from image_classification.serving.python_backend import TritonPythonModel" in \
        (model_dir / "1" / "model.py").read_text()
    config = parse((model_dir / "config.pbtxt").read_text())
    assert config["backend"] == ["python"] and "platform" not in config
    params = {k: v["string_value"][0] for k, v in config["parameters"].items()}
    assert params["checkpoint"] == "model.pth.tar" and params["precision"] == "fp32"

    # Triton's python backend hands the configuration over as JSON, and its utilities as a module.
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_backend_utils())
    spec = importlib.util.spec_from_file_location("repository_model", model_dir / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps({"max_batch_size": 16, "parameters": {
        k: {"string_value": v} for k, v in params.items()}}), "model_instance_kind": "CPU",
        "model_instance_device_id": "0", "model_repository": str(model_dir), "model_version": "1"})
    images = val_batch(digits_root, classifier, 5)
    responses = model.execute([{"INPUT__0": images[:2]}, {"INPUT__0": images[2:]}])
    assert [r.error for r in responses] == [None, None]
    logits = np.concatenate([r.outputs[0].as_numpy() for r in responses])
    with torch.no_grad():
        reference = classifier.model(torch.from_numpy(images)).numpy()
    assert [r.outputs[0].name for r in responses] == ["OUTPUT__0", "OUTPUT__0"]
    assert [len(r.outputs[0].as_numpy()) for r in responses] == [2, 3]
    np.testing.assert_allclose(logits, reference, atol=1e-3)
    bad = model.execute([{"INPUT__0": images[:, :2]}])  # two channels: an error response, not a dead instance
    assert bad[0].error is not None and bad[0].outputs == []
    model.finalize()


def test_non_empty_repository_needs_force_and_keeps_other_files(capsys, deploy_main, checkpoint, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "notes.txt").write_text("mine")
    result = cli(capsys, deploy_main, "--weights", checkpoint, "--repository", repo, "--instance-kind", "cpu")
    assert_one_line_error(result, "exists and is not empty", "--force")
    assert files_under(repo) == {"notes.txt"}

    args = ["--weights", checkpoint, "--repository", repo, "--instance-kind", "cpu", "--force", "--no-verify"]
    assert cli(capsys, deploy_main, *args, "--max-batch-size", 4).returncode == 0
    assert cli(capsys, deploy_main, *args, "--max-batch-size", 8).returncode == 0  # replaces the entry
    assert (repo / "notes.txt").read_text() == "mine"
    assert parse((repo / "efficientnet-b0" / "config.pbtxt").read_text())["max_batch_size"] == [8]
    assert files_under(repo) == {"notes.txt", "efficientnet-b0/config.pbtxt", "efficientnet-b0/labels.txt",
                                 "efficientnet-b0/1/model.onnx"}
    no_leftovers(repo)


def test_force_never_replaces_a_folder_that_is_not_a_model(capsys, deploy_main, checkpoint, tmp_path):
    repo = tmp_path / "repo"
    (repo / "efficientnet-b0").mkdir(parents=True)
    (repo / "efficientnet-b0" / "data.bin").write_text("precious")
    result = cli(capsys, deploy_main, "--weights", checkpoint, "--repository", repo, "--force",
                 "--instance-kind", "cpu")
    assert_one_line_error(result, "is not a Triton model folder")
    assert (repo / "efficientnet-b0" / "data.bin").read_text() == "precious"
    assert files_under(repo) == {"efficientnet-b0/data.bin"}


@pytest.mark.parametrize("extra, fragment", [
    (("--instance-kind", "cpu", "--precision", "fp16"), "fp16 serving needs GPU instances"),
    (("--capture-cuda-graph",), "--capture-cuda-graph is an option of Triton's TensorRT backend"),
    (("--max-batch-size", 8, "--preferred-batch-sizes", 16), "--preferred-batch-sizes must lie in 1..8"),
    (("--model-name", "my model"), "not valid for Triton"),
])
def test_bad_flags_are_one_line(capsys, deploy_main, checkpoint, tmp_path, extra, fragment):
    result = cli(capsys, deploy_main, "--weights", checkpoint, "--repository", tmp_path / "repo", *extra)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "repo").exists()


def test_tensorrt_without_tensorrt_is_one_line(capsys, deploy_main, checkpoint, tmp_path):
    try:
        from image_classification.export.tensorrt import import_tensorrt

        import_tensorrt()
        if torch.cuda.is_available():
            pytest.skip("TensorRT and a GPU are here: the engine would be built (the gpu session covers it)")
        fragment = "PyTorch sees none"
    except Exception:
        fragment = "TensorRT is not installed"
    result = cli(capsys, deploy_main, "--weights", checkpoint, "--repository", tmp_path / "repo", "--format",
                 "tensorrt")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "repo").exists()


def test_repository_that_is_a_file_and_missing_weights(capsys, deploy_main, checkpoint, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    result = cli(capsys, deploy_main, "--weights", checkpoint, "--repository", target)
    assert_one_line_error(result, "is not a directory")
    result = cli(capsys, deploy_main, "--repository", tmp_path / "repo")
    assert_one_line_error(result, "no weights given")


def test_script_reports_a_missing_checkpoint_in_one_line(tmp_path):
    result = run_script(DEPLOY, "--weights", tmp_path / "missing.pth.tar", "--repository", tmp_path / "repo")
    assert_one_line_error(result, "checkpoint not found")
    assert not (tmp_path / "repo").exists()
