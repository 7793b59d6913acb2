"""Every command line answers --help at once (building its parser imports no torch), gpunet/train.py's help says
what each flag does and its default, and a reader that goes away (`... | head -1`) ends the program quietly."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

ENTRY_POINTS = sorted(
    str(p.relative_to(REPO)) for folder in ("efficientnet", "gpunet", "triton") for p in (REPO / folder).glob("*.py")
    if 'if __name__ == "__main__":' in p.read_text()
)
# A module named torch or torch.<anything> in `python -X importtime` output ("import time: self | cumulative | name").
TORCH_IMPORT = re.compile(r"\|\s+torch(\.\S+)?\s*$")


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="1000")


def test_entry_points_found():
    for name in ("efficientnet/main.py", "efficientnet/launch.py", "efficientnet/classify.py",
                 "efficientnet/model2onnx.py", "efficientnet/checkpoint2model.py", "efficientnet/quant_main.py",
                 "gpunet/train.py", "gpunet/validate.py", "gpunet/main.py", "gpunet/classify.py", "gpunet/launch.py",
                 "gpunet/model2onnx.py", "gpunet/quant_main.py"):
        assert name in ENTRY_POINTS


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_help_imports_no_torch(script):
    proc = subprocess.run([sys.executable, "-X", "importtime", script, "--help"], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:") or "usage:" in proc.stdout.splitlines()[0], proc.stdout[:500]
    imported = [line for line in proc.stderr.splitlines() if TORCH_IMPORT.search(line)]
    assert not imported, f"{script} --help imported torch: {imported[:3]}"


# ------------------------------------------------------------------------------------------- gpunet/train.py's help

def option_blocks(help_text: str) -> dict[str, str]:
    """{option string: its help text} of a rendered help: an option's line, with its help text beside it or on the
    more deeply indented lines below."""
    blocks, current = {}, []
    for line in help_text.splitlines():
        m = re.match(r"^  (-\S.*?)(?:  +(.*))?$", line)
        if m:
            current = [m.group(2) or ""]
            for invocation in m.group(1).split(", "):
                blocks[invocation.split(" ")[0]] = current
        elif line.startswith("   ") and current:
            current.append(line.strip())
        else:
            current = []
    return {option: " ".join(parts).strip() for option, parts in blocks.items()}


def test_every_train_flag_has_help_and_shows_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    from gpunet import train

    parser = train.build_parser()
    blocks = option_blocks(parser.format_help())
    for action in parser._actions:
        if not action.option_strings:
            continue
        text = blocks[action.option_strings[-1]]
        assert text.strip(), f"{action.option_strings} has no help"
        shown = action.nargs != 0 and action.default not in (None, "")
        if shown:
            assert "default" in text, f"{action.option_strings}: no default in {text!r}"
    assert "(default: 32)" in blocks["--batch-size"] and "(default: 0.01)" in blocks["--lr"]
    assert "not supported: GPUNet's head always uses average pooling" in blocks["--gp"]


def test_train_help_keeps_the_description_as_written():
    proc = subprocess.run([sys.executable, "gpunet/train.py", "--help"], cwd=REPO, env=env(), capture_output=True,
                          text=True, timeout=300)
    assert "--opt rmsproptf \\\n        -b 192" in proc.stdout  # the shell example's line breaks survive


# ------------------------------------------------------------------------------------------- a reader that goes away

def run_with_reader_gone(argv: list[str]) -> subprocess.CompletedProcess:
    """Run with stdout a pipe whose read end is already closed, as after `| head -1` has read its line."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, *argv], cwd=REPO, env=env(), stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("script", ["efficientnet/main.py", "gpunet/train.py"])
def test_help_into_a_closed_pipe_is_quiet(script):
    proc = run_with_reader_gone([script, "--help"])
    assert proc.stderr == ""
    assert proc.returncode in (0, 141)  # argparse itself ignores a failed write of the help text


@pytest.mark.parametrize("size", [10, 1_000_000])  # left in the buffer at exit / written while running
def test_run_cli_output_into_a_closed_pipe_is_quiet(size):
    proc = run_with_reader_gone(["-c", f"from common.cli_errors import run_cli; run_cli(print, 'x' * {size})"])
    assert (proc.returncode, proc.stderr) == (141, "")


def test_other_broken_pipes_keep_their_traceback():
    """Only stdout's reader going away is quiet: a broken socket while stdout is fine is a real failure."""
    code = ("import socket\nfrom common.cli_errors import run_cli\n"
            "def main():\n    a, b = socket.socketpair(); b.close(); a.sendall(b'x'); a.sendall(b'x')\n"
            "run_cli(main)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1 and "BrokenPipeError" in proc.stderr


def test_torch_free_names_match_the_implementations():
    """The choices the parsers offer (kept free of torch) are the ones the implementations take."""
    from image_classification.data import choices, loader, transforms
    from image_classification.export import onnx, onnx_flags

    assert tuple(transforms.INTERPOLATIONS) == choices.INTERPOLATIONS
    assert loader.BACKENDS == choices.BACKENDS
    assert tuple(onnx.PRECISIONS) == onnx_flags.PRECISION_CHOICES
