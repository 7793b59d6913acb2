"""quant_main.py on the digits: PTQ (max, histogram) and QAT keep the FP32 accuracy, the quantizers sit where
TensorRT wants them, checkpoints carry the quantizer state, QAT resumes, and the FP32 entry points (main.py
--evaluate, classify.py) take quantized checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from image_classification.models import create_model
from image_classification.models.checkpoint import read_checkpoint
from image_classification.quantization.state import restore_quantizers
from tests.conftest import run_in_process as cli

from .conftest import DIGITS, quant_main

pytest.importorskip("modelopt.torch.quantization")

TOLERANCE = 2.0  # points of top-1


def test_ptq_and_qat_stay_within_two_points_of_fp32(fp32_digits, ptq_runs, qat_run):
    fp32, _ = fp32_digits
    assert fp32 > 85.0, "the FP32 model must have learned the digits for the comparison to mean anything"
    for method, run in ptq_runs.items():
        assert run["calibration"]["method"] == method
        assert run["val"]["images"] > 300
        assert abs(run["val"]["top1"] - fp32) <= TOLERANCE, (method, run["val"]["top1"], fp32)
    summary, _ = qat_run
    assert summary["epochs_done"] == 1
    assert abs(summary["best_top1"] - fp32) <= TOLERANCE, (summary["best_top1"], fp32)
    assert summary["ptq"]["calibration"]["method"] == "max"


def test_calibrated_model_really_quantizes(fp32_digits, ptq_runs, digits_root):
    """Not a no-op: the quantized model's logits move away from the FP32 ones, weights take at most 255 levels per
    output channel, and activations are snapped to their INT8 grid."""
    from image_classification.inference.classify import load_classifier

    _, weights = fp32_digits
    calibrated = ptq_runs["max"]["checkpoint"]
    fp32 = create_model("efficientnet-b0", pretrained=weights, num_classes=10, bn_momentum=0.1).eval()
    int8 = create_model("efficientnet-b0", pretrained=calibrated, num_classes=10, bn_momentum=0.1,
                        restore_quantizers=restore_quantizers).eval()
    # Held-out digits, preprocessed as validation did: on real images the two must agree (on noise, whose logits
    # are near ties, a 5-of-8 agreement said nothing about quantization).
    prep = load_classifier(None, weights, device="cpu", fast=False)
    paths = [p for d in range(10) for p in sorted((digits_root / "val" / str(d)).glob("*.jpg"))[:3]]
    images = prep.normalise(torch.stack([prep.load_image(p) for p in paths]))
    with torch.no_grad():
        a, b = fp32(images), int8(images)
        assert (a - b).abs().max() > 1e-3
        assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.9
        conv = int8.layers[1].block0.expand.conv
        levels = conv.weight_quantizer(conv.weight).flatten(1)
        assert max(len(torch.unique(row)) for row in levels) <= 255
        step = conv.input_quantizer.amax / 127.0
        snapped = conv.input_quantizer(images[:, :1].expand(-1, conv.in_channels, -1, -1).contiguous())
        assert torch.allclose(snapped / step, torch.round(snapped / step), atol=1e-3)


def test_quantizers_where_tensorrt_wants_them(ptq_runs):
    """Every conv and linear weight per channel and input per tensor, both SE multiply inputs, the skip input of
    every residual add, the pooling input; no BatchNorm quantizer (TensorRT folds BN into the conv)."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    from image_classification.models.layers import SqueezeExcitation, StochasticDepthResidual
    from image_classification.quantization.summary import quantizer_counts

    model = create_model("efficientnet-b0", pretrained=ptq_runs["histogram"]["checkpoint"], num_classes=10,
                         restore_quantizers=restore_quantizers)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    se = sum(isinstance(m, SqueezeExcitation) for m in model.modules())
    residuals = sum(isinstance(m, StochasticDepthResidual) for m in model.modules())
    counts = quantizer_counts(model)
    assert counts["weights"] == convs + linears
    assert counts["conv"] == convs and counts["linear"] == linears and counts["pool"] == 1
    assert counts["se"] == 2 * se > 0
    assert counts["residual"] == residuals > 0
    assert counts["enabled"] == 2 * (convs + linears) + 2 * se + residuals + 1
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert not any(q.is_enabled for q in module.modules() if isinstance(q, TensorQuantizer)), name


def test_checkpoint_records_the_quantizer_state(ptq_runs, qat_run):
    hist = read_checkpoint(ptq_runs["histogram"]["checkpoint"])
    record = hist["quantization"]
    assert record["calib_method"] == "histogram" and record["percentile"] == 99.99
    assert record["calib_batches"] == 10 and record["calib_images"] == 320
    assert record["ptq_top1"] == pytest.approx(ptq_runs["histogram"]["val"]["top1"])
    assert record["modelopt_state"]["modelopt_state_dict"] and record["modelopt_version"]
    assert hist["arch"] == "efficientnet-b0" and hist["num_classes"] == 10 and len(hist["class_names"]) == 10
    assert any(k.endswith("input_quantizer._amax") for k in hist["state_dict"])
    assert any(k.endswith("residual_quantizer._amax") for k in hist["state_dict"])

    _, workspace = qat_run
    best = read_checkpoint(workspace / "model_best.pth.tar")
    assert best["quantization"]["calib_method"] == "max" and best["quantization"]["qat_epochs"] == 1
    assert best["optimizer"] and best["epoch"] == 1
    listing = (workspace / "quant_summary.txt").read_text()
    assert "layers.1.block1.residual_add.residual_quantizer" in listing and "TensorQuantizers" in listing


def test_qat_continues_from_a_quantized_checkpoint_and_resumes(qat_run, digits_root, tmp_path, capsys):
    """A quantized --pretrained-from-file skips calibration; --resume picks an interrupted QAT run up where it
    stopped; the INT8 ranges stay those of the calibration throughout."""
    _, workspace = qat_run
    calibrated = workspace / "calibrated.pth.tar"
    short = [*DIGITS, "--arch", "efficientnet-b0", "--workspace", tmp_path, "--epochs", 2, "--prof", 3,
             "--lr", 0.001]
    capsys.readouterr()
    quant_main(digits_root, "--pretrained-from-file", calibrated, "--run-epochs", 1, *short)
    assert "calibrating" not in capsys.readouterr().out
    first = read_checkpoint(tmp_path / "checkpoint.pth.tar")
    assert first["epoch"] == 1 and first["quantization"]["qat_epochs"] == 1

    summary = quant_main(digits_root, "--resume", tmp_path / "checkpoint.pth.tar", *short)
    assert "=> resumed" in capsys.readouterr().out
    assert summary["epochs_done"] == 2
    second = read_checkpoint(tmp_path / "checkpoint.pth.tar")
    assert second["epoch"] == 2 and second["quantization"]["qat_epochs"] == 2
    assert second["quantization"]["calib_method"] == "max"
    start = read_checkpoint(calibrated)["state_dict"]
    for key in ("stem.conv.input_quantizer._amax", "layers.1.block1.residual_add.residual_quantizer._amax"):
        assert torch.equal(second["state_dict"][key], start[key]), key
    assert not torch.equal(second["state_dict"]["stem.conv.weight"], start["stem.conv.weight"])


def test_fp32_entry_points_evaluate_and_classify_quantized_checkpoints(qat_run, digits_root, tmp_path, capsys):
    from efficientnet import classify, main

    summary, workspace = qat_run
    best = workspace / "model_best.pth.tar"
    args = main.build_parser().parse_args([str(digits_root), "--evaluate", "--pretrained-from-file", str(best),
                                           "--workspace", str(tmp_path), *DIGITS])
    result = main.run(args)
    assert result["val"]["top1"] == pytest.approx(summary["best_top1"], abs=1e-6)

    # quant_main.py --evaluate of a quantized checkpoint: no calibration, the architecture the checkpoint names
    # (not quant_main's default efficientnet-quant-b0), the same numbers as main.py's.
    few = ["--prof", "3", "--workspace"]
    again = quant_main(digits_root, "--evaluate", "--pretrained-from-file", best, *DIGITS, *few, tmp_path / "q")
    assert again["arch"] == "efficientnet-b0"
    args = main.build_parser().parse_args([str(digits_root), "--evaluate", "--pretrained-from-file", str(best),
                                           *DIGITS, *few, str(tmp_path / "m")])
    assert again["val"]["top1"] == pytest.approx(main.run(args)["val"]["top1"], abs=1e-6)

    proc = cli(capsys, classify.main, "--weights", best, "--image", digits_root / "val" / "2",
               digits_root / "val" / "7", "--topk", 1, "--json")
    assert proc.returncode == 0, proc.stderr
    documents = json.loads(proc.stdout)  # nothing but the JSON on stdout: modelopt's chatter is kept off it
    right = sum(doc["predictions"][0]["class"] == doc["image"].split("/")[-2] for doc in documents)
    assert right >= 0.85 * len(documents)


def test_upstream_quant_arch_takes_fp32_b0_weights(fp32_digits, digits_root, tmp_path, capsys):
    """efficientnet-quant-b0 (quant_main.py's default, upstream's name): B0 with the 1x1-conv SE, built from the
    FP32 efficientnet-b0 weights (SE weights reshaped), calibrated, and classified by name."""
    from efficientnet import classify

    fp32, weights = fp32_digits
    summary = quant_main(digits_root, "--pretrained-from-file", weights, "--workspace", tmp_path, "--evaluate",
                         "--calib-method", "max", *DIGITS)
    assert summary["arch"] == "efficientnet-quant-b0"
    assert abs(summary["val"]["top1"] - fp32) <= TOLERANCE
    ckpt = read_checkpoint(summary["checkpoint"])
    assert ckpt["arch"] == "efficientnet-quant-b0"
    assert ckpt["state_dict"]["layers.0.block0.se.squeeze.weight"].dim() == 4
    assert "layers.0.block0.se.squeeze.weight_quantizer._amax" in ckpt["state_dict"]
    proc = cli(capsys, classify.main, "--arch", "efficientnet-quant-b0", "--weights", summary["checkpoint"],
               "--image", digits_root / "val" / "4", "--topk", 1)
    assert proc.returncode == 0, proc.stderr
    answers = [line.split(":")[0] for line in proc.stdout.splitlines() if line.endswith("%")]
    assert len(answers) == len(list((digits_root / "val" / "4").iterdir()))
    assert answers.count("4") >= 0.8 * len(answers)
