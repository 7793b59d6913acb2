"""Q/DQ ONNX of quantized models: model2onnx.py finds the quantizers in the checkpoint, the graph carries a
QuantizeLinear/DequantizeLinear pair per enabled quantizer, onnxruntime computes what the fake-quantized PyTorch
model computes on real images, and the INT8 TensorRT engine is built or skipped with one line. GPUNet's SE and
residual quantizers survive a checkpoint round trip and export too."""
from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch

from image_classification.models import create_model
from tests.conftest import assert_one_line_error
from tests.conftest import run_in_process as cli

pytest.importorskip("modelopt.torch.quantization")
onnxruntime = pytest.importorskip("onnxruntime")
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _digits_batch(classifier, root, n=48):
    paths = sorted((root / "val").rglob("*.jpg"))[::7][:n]
    return torch.stack([classifier.load_image(p) for p in paths])


def test_model2onnx_exports_qdq_that_onnxruntime_runs_like_fake_quant(qat_run, digits_root, tmp_path, capsys):
    import onnx

    from efficientnet import model2onnx
    from image_classification.inference.classify import load_classifier
    from image_classification.quantization.state import restore_quantizers
    from image_classification.quantization.summary import quantizer_counts

    _, workspace = qat_run
    best = workspace / "model_best.pth.tar"
    output = tmp_path / "int8.onnx"
    proc = cli(capsys, model2onnx.main, "--pretrained-from-file", best, "--output", output, "-b", 4)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"Q/DQ nodes: (\d+) QuantizeLinear, (\d+) DequantizeLinear", proc.stdout)
    assert found, proc.stdout
    classifier = load_classifier(None, best, device="cpu", restore_quantizers=restore_quantizers)
    enabled = quantizer_counts(classifier.model)["enabled"]
    assert int(found.group(1)) == int(found.group(2)) == enabled > 0
    assert "max abs difference vs the fake-quantized PyTorch model" in proc.stdout
    assert "INT8 Q/DQ" in proc.stdout
    if not HAS_TENSORRT:
        assert "skipping the INT8 TensorRT engine: TensorRT is not installed" in proc.stderr

    proto = onnx.load(str(output))
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("QuantizeLinear") == enabled
    assert {p.key: p.value for p in proto.metadata_props}["quantization"] == "int8-qdq"

    images = classifier.normalise(_digits_batch(classifier, digits_root))
    with torch.no_grad():
        reference = classifier.model(images).numpy()
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    # Most images match to float precision; an odd one may land a value on the other side of an INT8 rounding tie.
    per_image = np.abs(logits - reference).max(axis=1)
    assert np.median(per_image) < 1e-3 * max(1.0, np.abs(reference).max()), per_image
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.95


def test_model2onnx_refusals_for_quantized_models(qat_run, fp32_digits, tmp_path, capsys):
    from efficientnet import model2onnx

    _, workspace = qat_run
    best = workspace / "model_best.pth.tar"
    assert_one_line_error(cli(capsys, model2onnx.main, "--pretrained-from-file", best, "--output",
                              tmp_path / "a.onnx", "--precision", "fp16"), "exports in fp32", "--precision fp16")
    assert_one_line_error(cli(capsys, model2onnx.main, "--pretrained-from-file", fp32_digits[1], "--output",
                              tmp_path / "b.onnx", "--quantized"), "--quantized", "no quantizer state",
                          "quant_main.py")
    if not HAS_TENSORRT:
        proc = cli(capsys, model2onnx.main, "--pretrained-from-file", best, "--output", tmp_path / "c.onnx",
                   "--int8-engine", "on")
        assert_one_line_error(proc, "TensorRT is not installed")


def test_gpunet_se_and_residual_quantizers_round_trip_and_export():
    """GPUNet-0: calibrated on random batches (the API, not the CLI), recorded, restored into a fresh model that
    computes the same, exported with one Q/DQ pair per enabled quantizer."""
    from image_classification.export.onnx import export_onnx_bytes, verify_onnx
    from image_classification.export.qdq import count_qdq
    from image_classification.models.layers import SqueezeExcitation, StochasticDepthResidual
    from image_classification.quantization.calibrate import calibrate
    from image_classification.quantization.state import is_quantized_model, make_record, restore_quantizers
    from image_classification.quantization.summary import quantizer_counts

    torch.manual_seed(0)
    model = create_model("gpunet-0", num_classes=10).eval()
    batches = [(torch.randn(4, 3, 64, 64), torch.zeros(4, dtype=torch.long)) for _ in range(2)]
    result = calibrate(model, batches, method="histogram", num_batches=2)
    assert (result.batches, result.images, result.percentile) == (2, 8, 99.99)
    counts = quantizer_counts(model)
    assert counts["se"] == 2 * sum(isinstance(m, SqueezeExcitation) for m in model.modules()) > 0
    assert counts["residual"] == sum(isinstance(m, StochasticDepthResidual) for m in model.modules()) > 0

    fresh = create_model("gpunet-0", num_classes=10).eval()
    restore_quantizers(fresh, make_record(model, calib_method="histogram"), "test")
    assert is_quantized_model(fresh)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))

    data = export_onnx_bytes(fresh, image_size=64)
    assert count_qdq(data) == {"QuantizeLinear": counts["enabled"], "DequantizeLinear": counts["enabled"]}
    verify_onnx(data, fresh, image_size=64, quantized=True)  # raises when the graph computes something else


def test_the_onnxruntime_check_catches_wrong_ranges(qat_run):
    """The Q/DQ check tolerates INT8 rounding ties but not an export whose ranges differ from the model's: with the
    activation ranges of the PyTorch model doubled after the export, it fails."""
    import copy

    from modelopt.torch.quantization.nn import TensorQuantizer

    from image_classification.export.onnx import VerificationError, export_onnx_bytes, verify_onnx
    from image_classification.models.loading import load_checkpoint_model
    from image_classification.quantization.state import restore_quantizers

    model = load_checkpoint_model(qat_run[1] / "model_best.pth.tar", restore_quantizers=restore_quantizers).model
    data = export_onnx_bytes(model, image_size=32)
    verify_onnx(data, model, image_size=32, quantized=True)
    wrong = copy.deepcopy(model)
    for name, quantizer in wrong.named_modules():
        if isinstance(quantizer, TensorQuantizer) and quantizer.is_enabled and name.endswith("input_quantizer"):
            quantizer.amax = quantizer.amax * 2
    with pytest.raises(VerificationError, match="beyond INT8 rounding ties"):
        verify_onnx(data, wrong, image_size=32, quantized=True)
