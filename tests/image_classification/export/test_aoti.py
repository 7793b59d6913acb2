"""AOTInductor packages: one CPU export of EfficientNet-B0 through the command line (about 30 s of C++ compilation),
loaded by a process that knows nothing but torch; the rest of the checks are cheap."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from common.cli_errors import UserError
from image_classification.export import aoti
from image_classification.models import create_model
from image_classification.models.gpunet import to_upstream_state_dict
from image_classification.models.loading import load_checkpoint_model
from tests.conftest import REPO, assert_one_line_error, run_script

CLASSES = [f"digit {i}" for i in range(10)]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """efficientnet-b0 (10 classes, 32 px) exported by `python -m image_classification.export aoti` (the one
    entry; test_cli_errors_are_one_line runs the module's own) from a training-style checkpoint without a
    num_classes entry (the class count comes from the classifier's shape): (package path, reference model)."""
    root = tmp_path_factory.mktemp("aoti")
    torch.manual_seed(0)
    reference = create_model("efficientnet-b0", num_classes=10).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a broken fold or export shows
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.normal_(0, 0.1)
    checkpoint = root / "model.pth.tar"
    torch.save({"epoch": 3, "arch": "efficientnet-b0", "state_dict": reference.state_dict()}, checkpoint)
    names = root / "classes.txt"
    names.write_text("\n".join(CLASSES) + "\n")
    output = root / "out" / "b0.pt2"
    env = dict(os.environ, IMAGE_CLASSIFICATION_CACHE=str(root / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "image_classification.export", "aoti", "--arch", "efficientnet-b0", "--weights",
         str(checkpoint), "--output", str(output), "--image-size", "32", "--class-names", str(names)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {output}" in proc.stdout and "10 classes" in proc.stdout
    return output, reference


LOADER = textwrap.dedent("""
    import json, sys
    import torch
    package, inputs, outputs = sys.argv[1:4]
    model = torch._inductor.aoti_load_package(package)
    results = [model(x) for x in torch.load(inputs)]
    torch.save(results, outputs)
    print(json.dumps({"metadata": json.loads(model.get_metadata()["image_classification"]),
                      "project_modules": sorted(m for m in sys.modules
                                                if m.split(".")[0] in ("image_classification", "common"))}))
""")


def test_package_runs_with_torch_alone_for_any_batch(package, tmp_path):
    path, reference = package
    # the package and its metadata, and no temporary file left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["b0.pt2", "b0.pt2.json"]
    inputs = [torch.randn(1, 3, 32, 32), torch.randn(3, 3, 32, 32)]
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", LOADER, str(path), str(tmp_path / "inputs.pt"),
                           str(tmp_path / "outputs.pt")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["project_modules"] == []
    outputs = torch.load(tmp_path / "outputs.pt")
    with torch.no_grad():
        for x, out in zip(inputs, outputs):
            assert out.shape == (x.shape[0], 10) and out.dtype == torch.float32
            torch.testing.assert_close(out, reference(x), atol=1e-4, rtol=1e-4)

    meta = report["metadata"]
    assert meta["class_names"] == CLASSES
    cfg = meta["pretrained_cfg"]
    assert cfg["architecture"] == "efficientnet-b0" and cfg["num_classes"] == 10
    assert cfg["input_size"] == [3, 32, 32] and cfg["model_input_size"] == [3, 224, 224]
    assert cfg["mean"] == pytest.approx([0.485, 0.456, 0.406]) and cfg["interpolation"] == "bicubic"
    assert meta["batch"] == {"min": 1, "max": 256} and meta["precision"] == "fp32" and meta["bn_folded"]
    assert json.loads(aoti.metadata_path(path).read_text()) == meta


def test_load_aoti(package):
    path, reference = package
    model = aoti.load_aoti(path)
    assert model.class_names == CLASSES and model.pretrained_cfg["num_classes"] == 10
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)  # cast to float32 on the way in
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x.float()), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="batches of 1 to 256"):
        model(torch.randn(257, 3, 32, 32))
    with pytest.raises(UserError, match="not found"):
        aoti.load_aoti(path.with_name("missing.pt2"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            aoti.load_aoti(path, device="cuda")


def test_export_refuses_bad_requests(tmp_path):
    model = create_model("gpunet-0", num_classes=10)
    with pytest.raises(UserError, match="ends in .pt2"):
        aoti.export_aoti(model, tmp_path / "model.onnx", image_size=32)
    with pytest.raises(UserError, match="fp16 package needs device cuda"):
        aoti.export_aoti(model, tmp_path / "model.pt2", image_size=32, precision="fp16")
    with pytest.raises(UserError, match="3 class names given for a model with 10 classes"):
        aoti.export_aoti(model, tmp_path / "model.pt2", image_size=32, class_names=["a", "b", "c"])
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_num_classes(tmp_path):
    """The class count the exporter builds with comes from the checkpoint, in every layout."""
    b0 = create_model("efficientnet-b0", num_classes=7)
    torch.save({"module." + k: v for k, v in b0.state_dict().items()}, tmp_path / "plain.pth")
    assert load_checkpoint_model(tmp_path / "plain.pth", "efficientnet-b0").num_classes == 7
    torch.save({"state_dict": b0.state_dict(), "num_classes": 7}, tmp_path / "ours.pth")
    assert load_checkpoint_model(tmp_path / "ours.pth", "efficientnet-b0").num_classes == 7
    gpunet = create_model("gpunet-d1", num_classes=5)  # upstream's key names ("network.head:.net.8.weight")
    torch.save({"state_dict": to_upstream_state_dict(gpunet)}, tmp_path / "upstream.pth")
    assert load_checkpoint_model(tmp_path / "upstream.pth", "gpunet-d1").num_classes == 5


def test_cli_errors_are_one_line(tmp_path):
    missing = run_script("-m", "image_classification.export.aoti", "--arch", "efficientnet-b0",
                         "--weights", tmp_path / "missing.pth.tar", "--output", tmp_path / "b0.pt2")
    assert_one_line_error(missing, "checkpoint not found")
    assert not (tmp_path / "b0.pt2").exists()
    wrong_suffix = run_script("-m", "image_classification.export.aoti", "--arch", "efficientnet-b0",
                              "--output", tmp_path / "b0.onnx")
    assert_one_line_error(wrong_suffix, ".pt2")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_cuda_package(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGE_CLASSIFICATION_CACHE", str(tmp_path / "cache"))
    model = create_model("gpunet-0", num_classes=10).eval()
    path = aoti.export_aoti(model, tmp_path / "g0.pt2", image_size=64, device="cuda", precision="fp16",
                            max_batch=8)
    loaded = aoti.load_aoti(path, device="cuda")
    x = torch.randn(3, 3, 64, 64)  # float32 on the CPU: moved and cast inside
    out = loaded(x)
    assert out.dtype == torch.float32 and out.device.type == "cuda"
    with torch.no_grad():
        expected = model.cuda()(x.cuda())
    err = (out - expected).abs().max().item()
    assert err < 2e-2 * max(1.0, expected.abs().max().item()), err
    with pytest.raises(UserError, match="compiled for cuda"):
        aoti.load_aoti(path, device="cpu")
