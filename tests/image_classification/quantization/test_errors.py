"""Every way to get quantization wrong ends in one line on stderr and exit status 2: modelopt missing, FP32
weights of another architecture, a quantized checkpoint where FP32 weights are expected (and the reverse), and
misused flags."""
from __future__ import annotations

import os
import sys

import pytest
import torch

from common.cli_errors import UserError
from efficientnet import checkpoint2model, classify, launch, main, quant_main
from tests.conftest import REPO, assert_one_line_error
from tests.conftest import run_in_process as cli

from .conftest import DIGITS

MODELOPT_MODULES = ("modelopt", "modelopt.torch", "modelopt.torch.opt", "modelopt.torch.quantization")


@pytest.fixture
def without_modelopt(monkeypatch):
    """This process as if nvidia-modelopt were not installed (an import of it fails)."""
    for name in MODELOPT_MODULES:
        monkeypatch.setitem(sys.modules, name, None)


# --- modelopt missing -----------------------------------------------------------------------------------------


def test_quantizing_without_modelopt_says_how_to_install(without_modelopt, digits_root, tmp_path, capsys):
    proc = cli(capsys, quant_main.main, digits_root, "--pretrained-from-file", tmp_path / "fp32.pth.tar",
               "--workspace", tmp_path, *DIGITS)
    assert_one_line_error(proc, "needs NVIDIA Model Optimizer", "pip install 'nvidia-modelopt==0.47.0'",
                          "requests huggingface_hub")


def test_loading_a_quantized_checkpoint_without_modelopt(qat_run, without_modelopt, digits_root, capsys):
    best = qat_run[1] / "model_best.pth.tar"
    proc = cli(capsys, classify.main, "--weights", best, "--image", digits_root / "val" / "1")
    assert_one_line_error(proc, str(best), "INT8-quantized checkpoint", "nvidia-modelopt==0.47.0")


def test_quant_main_script_without_modelopt(tmp_path):
    """The real script, with an importable-but-broken modelopt shadowing the installed one (what a missing
    undeclared dependency of it looks like)."""
    import subprocess

    stub = tmp_path / "stub" / "modelopt"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError(\"No module named 'huggingface_hub'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stub.parent), str(REPO)])}
    proc = subprocess.run([sys.executable, str(REPO / "efficientnet" / "quant_main.py"), str(tmp_path),
                           "--pretrained-from-file", str(tmp_path / "w.pth"), "--cpu"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert_one_line_error(proc, "No module named 'huggingface_hub'", "nvidia-modelopt==0.47.0")


# --- FP32 weights that do not fit -------------------------------------------------------------------------------


def test_fp32_weights_of_another_architecture(fp32_digits, digits_root, tmp_path, capsys):
    pytest.importorskip("modelopt.torch.quantization")
    _, weights = fp32_digits
    proc = cli(capsys, quant_main.main, digits_root, "--arch", "efficientnet-quant-b4", "--pretrained-from-file",
               weights, "--workspace", tmp_path, "--evaluate", *DIGITS)
    assert_one_line_error(proc, "holds efficientnet-b0 weights, not efficientnet-quant-b4", "--arch")

    plain = tmp_path / "gpunet0.pth"  # a plain state dict names no architecture: the keys must tell
    torch.save(create_gpunet_weights(), plain)
    proc = cli(capsys, quant_main.main, digits_root, "--pretrained-from-file", plain, "--workspace", tmp_path,
               "--evaluate", *DIGITS)
    assert_one_line_error(proc, "does not fit efficientnet-quant-b0", "missing keys")


def create_gpunet_weights() -> dict:
    from image_classification.models import create_model

    return create_model("gpunet-0", num_classes=10).state_dict()


# --- quantized checkpoints where FP32 weights are expected, and the reverse ------------------------------------------


def test_quantized_checkpoint_refused_as_fp32(qat_run, digits_root, tmp_path, capsys):
    pytest.importorskip("modelopt.torch.quantization")
    from image_classification.models import create_model
    from image_classification.models.checkpoint import read_checkpoint

    best = qat_run[1] / "model_best.pth.tar"
    for flag in ("--pretrained-from-file", "--resume"):  # FP32 training from INT8 weights
        proc = cli(capsys, main.main, digits_root, flag, best, "--workspace", tmp_path, *DIGITS)
        assert_one_line_error(proc, "main.py trains FP32 models", "INT8-quantized checkpoint",
                              f"quant_main.py --pretrained-from-file {best}")
    proc = cli(capsys, checkpoint2model.main, "--checkpoint-path", best, "--weight-path", tmp_path / "w.pth")
    assert_one_line_error(proc, "INT8-quantized checkpoint", "cannot carry its quantizer state")

    # From Python, the checkpoint itself loads only with the quantization package's restorer, and says so.
    with pytest.raises(UserError) as err:
        create_model("efficientnet-b0", pretrained=best, num_classes=10)
    assert "restore_quantizers=image_classification.quantization.state.restore_quantizers" in str(err.value)
    assert "\n" not in str(err.value)

    # Its bare state dict has lost the quantizer description: an FP32 model cannot take the ranges.
    plain = tmp_path / "int8_state_dict.pth"
    torch.save(read_checkpoint(best)["state_dict"], plain)
    with pytest.raises(UserError) as err:
        create_model("efficientnet-b0", pretrained=plain, num_classes=10)
    assert "holds an INT8-quantized model" in str(err.value) and "_quantizer._amax" in str(err.value)

    # The quantizers belong to the architecture they were recorded on, even where the FP32 weights would fit.
    proc = cli(capsys, quant_main.main, digits_root, "--arch", "efficientnet-quant-b0", "--pretrained-from-file",
               best, "--workspace", tmp_path, "--evaluate", *DIGITS)
    assert_one_line_error(proc, "INT8-quantized efficientnet-b0, not efficientnet-quant-b0", "--arch efficientnet-b0")


def test_quant_main_start_errors(fp32_digits, digits_root, tmp_path, capsys):
    pytest.importorskip("modelopt.torch.quantization")
    _, weights = fp32_digits
    base = [digits_root, "--workspace", tmp_path, *DIGITS]
    cases = [
        (["--resume", weights], ["holds FP32 weights", f"--pretrained-from-file {weights}"]),
        ([], ["starts from trained weights", "--pretrained-from-file"]),
        (["--pretrained-from-file", weights, "--skip-calibration"], ["--skip-calibration needs a quantized"]),
    ]
    for extra, fragments in cases:
        assert_one_line_error(cli(capsys, quant_main.main, *base, *extra), *fragments)


def test_flag_misuse(digits_root, tmp_path, capsys):
    assert_one_line_error(cli(capsys, main.main, digits_root, "--calib-method", "max", "--dry-run"),
                          "--calib-method", "only apply to quantization", "quant_main.py")
    assert_one_line_error(cli(capsys, quant_main.main, digits_root, "--calib-method", "max", "--percentile", "99",
                              "--dry-run"), "--percentile applies to --calib-method histogram")
    assert_one_line_error(cli(capsys, quant_main.main, digits_root, "--calib-method", "mse"),
                          "--calib-method", "invalid choice")
    compiled = cli(capsys, quant_main.main, digits_root, "--compile", "--dry-run")
    assert compiled.returncode == 0 and '"compile": false' in compiled.stdout
    assert compiled.stderr.strip() == ("note: quantization-aware training runs eager; --compile is ignored (modelopt's "
                                       "quantized modules make torch.compile recompile until it falls back to eager)")
    assert_one_line_error(cli(capsys, quant_main.main, digits_root, "--num-calib-batches", "0"),
                          "--num-calib-batches", "at least 1")
    assert_one_line_error(cli(capsys, quant_main.main, digits_root, "--arch", "gpunet-0", "--dry-run"),
                          "trains efficientnet models", "gpunet/quant_main.py")
    assert_one_line_error(cli(capsys, launch.main, "--model", "efficientnet-b0", "--mode", "quantize", "--precision",
                              "FP32", "--platform", "CPU", digits_root, "--dry-run"),
                          "FP32 training recipe", "--model efficientnet-quant-b0 or efficientnet-quant-b4")
