"""`python -m image_classification.export FORMAT`: the list of formats, one line for a wrong format, and each format
run through the one entry (AOTInductor's run through it is test_aoti.py's package fixture)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from image_classification.export.__main__ import main
from image_classification.export.exporters import EXPORTERS
from tests.conftest import REPO, assert_one_line_error, run_in_process

TORCH_IMPORT = re.compile(r"\|\s+torch(\.\S+)?\s*$")  # `python -X importtime` lines of torch's modules


def run_entry(*argv, prelude: str = "pass", importtime: bool = False):
    """`python -m image_classification.export ARGV...` in a new interpreter, after `prelude` (Python code); with
    `importtime`, stderr lists every module imported."""
    code = (f"{prelude}; import runpy, sys; sys.argv = ['export', *{[str(a) for a in argv]!r}]; "
            "runpy.run_module('image_classification.export', run_name='__main__')")
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=str(REPO)))


def torch_imported(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if TORCH_IMPORT.search(line)]


@pytest.mark.parametrize("argv", [(), ("--help",)])
def test_without_a_format_it_lists_the_formats_at_once(argv):
    proc = run_entry(*argv, importtime=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = [line.split()[0] for line in proc.stdout.split("formats:")[1].splitlines() if line.strip()]
    assert listed == ["onnx", "tensorrt", "aoti"] == list(EXPORTERS)
    assert not torch_imported(proc)


def test_a_formats_help_names_the_one_entry():
    proc = run_entry("onnx", "--help", importtime=True)
    assert proc.returncode == 0 and "usage: python -m image_classification.export onnx" in proc.stdout
    assert not torch_imported(proc)  # onnx's parser lives in onnx_flags.py, apart from the exporter
    for name in EXPORTERS:
        parser = EXPORTERS[name].build_parser(f"python -m image_classification.export {name}")
        assert parser.format_usage().startswith(f"usage: python -m image_classification.export {name} ")


@pytest.mark.parametrize("argv,fragments", [
    (["bogus"], ["unknown export format 'bogus'", "choose from: onnx, tensorrt, aoti"]),
    (["--arch", "efficientnet-b0"], ["the export format comes first", "{onnx,tensorrt,aoti}"]),
])
def test_a_wrong_format_is_one_line_and_exit_2(capsys, argv, fragments):
    assert_one_line_error(run_in_process(capsys, main, *argv), *fragments)


def test_onnx(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the project's [onnx] extra)")
    from image_classification.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet-b0", num_classes=10).eval()
    checkpoint = tmp_path / "b0.pth.tar"
    torch.save({"arch": "efficientnet-b0", "state_dict": model.state_dict()}, checkpoint)
    output = tmp_path / "b0.onnx"
    proc = run_in_process(capsys, main, "onnx", "--pretrained-from-file", checkpoint, "--image-size", 32,
                          "--output", output)
    assert proc.returncode == 0, proc.stderr
    assert "max abs difference vs PyTorch" in proc.stdout and f"to {output}" in proc.stdout

    import onnxruntime as ort

    images = torch.randn(3, 3, 32, 32)
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"INPUT__0": images.numpy()})[0])
    with torch.no_grad():
        assert (got - model(images)).abs().max() < 1e-4

    over = run_in_process(capsys, main, "onnx", "--pretrained-from-file", checkpoint, "--output", checkpoint)
    assert_one_line_error(over, f"the output {checkpoint} is the checkpoint itself")


def test_tensorrt_without_tensorrt_is_one_line(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not parsed: TensorRT is missing")
    proc = run_entry("tensorrt", "--onnx", onnx_file, "--max-batch", 8,
                     prelude="import sys; sys.modules['tensorrt'] = None")
    assert_one_line_error(proc, "TensorRT is not installed", "pip install tensorrt")
    assert not (tmp_path / "m.plan").exists()


def test_tensorrt_refuses_to_overwrite_its_onnx(tmp_path, capsys):
    onnx_file = tmp_path / "m.onnx"
    proc = run_in_process(capsys, main, "tensorrt", "--onnx", onnx_file, "--engine", onnx_file)
    assert_one_line_error(proc, f"the output {onnx_file} is the ONNX file itself: pass another --engine")


def test_aoti_checks_its_output_before_compiling(tmp_path, capsys):
    wrong_suffix = run_in_process(capsys, main, "aoti", "--arch", "efficientnet-b0", "--output", tmp_path / "b0.onnx")
    assert_one_line_error(wrong_suffix, "--output must be a .pt2 file")
    weights = tmp_path / "b0.pt2"
    over = run_in_process(capsys, main, "aoti", "--arch", "efficientnet-b0", "--weights", weights, "--output", weights)
    assert_one_line_error(over, f"the output {weights} is the checkpoint itself")
