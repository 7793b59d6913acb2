"""Shared runs for the quantization tests: the digits EfficientNet-B0 (the session's `trained_digits`) calibrated
with max and with histogram, and fine-tuned with QAT for one epoch. Each runs once, in this process, through
quant_main.py's real command line."""
from __future__ import annotations

import pytest

# The flags the digits model was trained with (tests/image_classification/training/helpers.py and conftest.py's
# trained_digits), so calibration and QAT see the images and the BatchNorm momentum it learned on.
DIGITS = ("--image-size 32 -b 32 -j 0 --seed 3 --no-progress --bn_momentum 0.1 --crop-scale 0.6 1 --hflip 0 "
          "--label-smoothing 0.1 --weight-decay 5e-5 --print-freq 50 --cpu").split()
QAT = "--epochs 1 --lr 0.005 --lr-schedule cosine".split()


def quant_main(*argv) -> dict:
    """quant_main.py's run on this command line; returns its summary (main() returns the exit status)."""
    from efficientnet import quant_main as entry
    from image_classification.cli import convnets

    return convnets.run(entry.build_parser().parse_args([str(a) for a in argv]), entry.DIALECT)


@pytest.fixture(scope="session")
def fp32_digits(trained_digits):
    """(FP32 top-1, best checkpoint) of the digits model trained for these tests."""
    summary, workspace = trained_digits
    return summary["best_top1"], workspace / "model_best.pth.tar"


@pytest.fixture(scope="session")
def ptq_runs(fp32_digits, digits_root, tmp_path_factory):
    """{method: PTQ summary} for max and histogram calibration (quant_main.py --evaluate: calibrate, validate)."""
    pytest.importorskip("modelopt.torch.quantization")
    _, weights = fp32_digits
    runs = {}
    for method in ("max", "histogram"):
        workspace = tmp_path_factory.mktemp(f"ptq_{method}")
        runs[method] = quant_main(digits_root, "--arch", "efficientnet-b0", "--pretrained-from-file", weights,
                                  "--workspace", workspace, "--calib-method", method, "--evaluate", *DIGITS)
    return runs


@pytest.fixture(scope="session")
def qat_run(fp32_digits, digits_root, tmp_path_factory):
    """(summary, workspace) of calibration (max) plus one epoch of QAT from the FP32 digits weights."""
    pytest.importorskip("modelopt.torch.quantization")
    _, weights = fp32_digits
    workspace = tmp_path_factory.mktemp("qat")
    summary = quant_main(digits_root, "--arch", "efficientnet-b0", "--pretrained-from-file", weights,
                         "--workspace", workspace, "--calib-method", "max", *QAT, *DIGITS)
    return summary, workspace
