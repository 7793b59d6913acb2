"""Upstream's quantized architecture names: efficientnet-quant-b0..b7 (B0-B7 with the 1x1-conv SE that upstream
forced for INT8, taking the FP32 models' weights) and the gpunet-quant-<x> names of the GPUNet presets; they work
wherever an architecture is named. None of this needs modelopt."""
from __future__ import annotations

import pytest
import torch

from common.cli_errors import UserError
from efficientnet import launch, main, model2onnx
from image_classification.models import create_model, get_model_info, list_models
from image_classification.models.registry import share_weights
from tests.conftest import run_in_process as cli


def test_quant_names_registered_like_upstream():
    assert list_models("efficientnet-quant-*") == [f"efficientnet-quant-b{i}" for i in range(8)]
    for variant in ("b0", "b4"):
        info = get_model_info(f"efficientnet_quant_{variant}")
        fp32 = get_model_info(f"efficientnet-{variant}")
        assert info.name == f"efficientnet-quant-{variant}" and info.family == "efficientnet" and info.quantized
        assert info.weights_of == fp32.name and not fp32.quantized
        assert (info.input_size, info.crop_pct, info.interpolation) == (fp32.input_size, fp32.crop_pct, "bicubic")
        assert share_weights(info.name, fp32.name) and not share_weights(info.name, "efficientnet-b1")
    assert get_model_info("gpunet-quant-0").name == "gpunet-0"
    assert get_model_info("gpunet_quant_p0").name == "gpunet-p0"


def test_quant_b0_is_b0_with_the_conv_se():
    torch.manual_seed(0)
    fp32 = create_model("efficientnet-b0", num_classes=10).eval()
    quant = create_model("efficientnet-quant-b0", num_classes=10).eval()
    assert isinstance(quant.layers[1].block0.se.squeeze, torch.nn.Conv2d)
    assert sum(p.numel() for p in quant.parameters()) == sum(p.numel() for p in fp32.parameters())
    quant.load_state_dict(quant.adapt_state_dict(fp32.state_dict()))  # SE weights reshaped, nothing else changes
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(quant(x), fp32(x), atol=1e-5)
    with pytest.raises(UserError, match="always uses the 1x1-conv squeeze-excitation"):
        create_model("efficientnet-quant-b0", trt=False)


def test_fp32_weights_load_across_the_quant_twin(tmp_path):
    """A checkpoint that names efficientnet-b0 loads into efficientnet-quant-b0 (upstream's QAT started from
    checkpoint2model's B0 weights); another architecture's does not."""
    from image_classification.models.checkpoint import load_pretrained

    path = tmp_path / "b0.pth.tar"
    torch.save({"arch": "efficientnet-b0", "epoch": 1, "state_dict": create_model("efficientnet-b0", num_classes=10)
                .state_dict()}, path)
    load_pretrained(create_model("efficientnet-quant-b0", num_classes=10), path)
    with pytest.raises(UserError, match="holds efficientnet-b0 weights, not efficientnet-quant-b4"):
        load_pretrained(create_model("efficientnet-quant-b4", num_classes=10), path)


def test_quant_names_on_the_command_lines(tmp_path, capsys):
    proc = cli(capsys, main.main, tmp_path, "--arch", "efficientnet-quant-b0", "--dry-run")
    assert proc.returncode == 0 and '"arch": "efficientnet-quant-b0"' in proc.stdout
    proc = cli(capsys, launch.main, "--model", "efficientnet-quant-b4", "--mode", "evaluate", "--precision", "AMP",
               "--platform", "DGXA100", tmp_path, "--pretrained-from-file", tmp_path / "w.pth", "--dry-run")
    assert proc.returncode == 0 and '"arch": "efficientnet-quant-b4"' in proc.stdout
    assert '"evaluate": true' in proc.stdout and '"calib_method": "histogram"' in proc.stdout
    # An FP32 export of a quant architecture works, and says that it carries no Q/DQ.
    proc = cli(capsys, model2onnx.main, "--arch", "efficientnet-quant-b0", "--num-classes", 10, "--image-size", 32,
               "--output", tmp_path / "q.onnx", "--no-verify")
    assert proc.returncode == 0, proc.stderr
    assert "without INT8 quantizer state: exporting the FP32 graph" in proc.stderr
    proc = cli(capsys, model2onnx.main, "--arch", "efficientnet-quant-b0", "--trt", "false", "--output",
               tmp_path / "x.onnx")
    assert proc.returncode == 2  # after the random-weights warning: one error line
    assert proc.stderr.splitlines()[-1].startswith("error: efficientnet-quant-b0 always uses the 1x1-conv")
