"""Checks shared by the families' recipe tests for <family>/quantization/*.sh: one script per (platform, model,
precision) of every configs.yml preset that quantizes, each valid bash of the project's shape, each resolving (by a
dry run through launch.py) to the preset it names in --mode quantize, each expanding in bash to what was parsed."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from common.launcher import build_parser as multiproc_parser
from tests.shell_lines import expand

PRECISION_NAME = {"AMP": "fp16", "TF32": "tf32", "FP32": "fp32"}
CONFIG_NAMES = {"reprob": "random_erasing", "remode": "random_erasing_mode"}  # flag name -> TrainingConfig field


def quantizing_models(configs: dict) -> list[str]:
    return sorted(name for name, platforms in configs["models"].items()
                  if any(p.get("quantize") for ps in platforms.values() for p in ps.values()))


def expected_scripts(configs: dict) -> set[Path]:
    return {Path("quantization") / f"{platform}_{model}_{precision}.sh"
            for model in quantizing_models(configs)
            for platform, precisions in configs["models"][model].items() for precision in precisions}


def found_scripts(family: Path) -> set[Path]:
    # quickstart.sh is the digits tour, not a preset's recipe.
    return {p.relative_to(family) for p in (family / "quantization").glob("*.sh") if p.name != "quickstart.sh"}


def parse_name(rel: Path) -> tuple[str, str, str]:
    platform, model, precision = rel.name[: -len(".sh")].split("_")
    return platform, model, precision


def check_shape(family: Path, rel: Path) -> str:
    path = family / rel
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True).returncode == 0
    assert path.stat().st_mode & stat.S_IXUSR, "recipes are executable"
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[1].startswith("# ") and "Usage: bash" in lines[1] and "FP32_WEIGHTS [WORKSPACE]" in lines[1]
    assert "set -euo pipefail" in lines
    assert 'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"' in lines
    assert 'DATA_DIR="${DATA_DIR:-/imagenet}"' in lines
    assert any(line.startswith('FP32_WEIGHTS="${1:?') for line in lines), "the FP32 weights are required"
    return text


def launch_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("python ") and "launch.py" in ln]
    assert len(lines) == 1, f"expected one python ... launch.py line, got {lines}"
    assert lines[0].endswith(' "${@:3}"')
    return lines[0]


def substitute(line: str, family: Path, data: Path, weights: Path, workspace: Path) -> list[str]:
    values = {"$HERE": str(family), "$DATA_DIR": str(data), "$FP32_WEIGHTS": str(weights),
              "${2:-./}": str(workspace), "$NGPUS": "8"}
    return expand(line, values, "${@:3}")


def launch_argv(tokens: list[str], family: Path, platform: str) -> list[str]:
    """GPU recipes start one process per GPU through multiproc.py; the CPU one runs launch.py directly."""
    assert tokens[0] == "python"
    if platform != "CPU":
        assert Path(tokens[1]) == family / "multiproc.py"
        margs = multiproc_parser().parse_args(tokens[2:])
        assert margs.nproc_per_node == 8 and margs.nnodes == 1
        assert Path(margs.script) == family / "launch.py"
        return list(margs.script_args)
    assert Path(tokens[1]) == family / "launch.py"
    return tokens[2:]


def check_dry_run(family: Path, configs: dict, launch_main: Callable, arch_of: Callable[[str], str], rel: Path,
                  tmp_path: Path, capsys) -> dict:
    """The recipe's launch line through launch.py --dry-run: the preset, the quantize mode, the weights."""
    platform, model, precision = parse_name(rel)
    line = launch_line(check_shape(family, rel))
    data, weights, workspace = tmp_path / "data", tmp_path / "fp32.pth.tar", tmp_path / "ws"
    argv = launch_argv(substitute(line, family, data, weights, workspace), family, platform)
    assert argv[:8] == ["--model", model, "--precision", precision, "--mode", "quantize", "--platform", platform]
    capsys.readouterr()
    assert launch_main(argv + ["--dry-run"]) == 0  # exit status: a dry run trains nothing
    cfg = json.loads(capsys.readouterr().out)

    preset = configs["models"][model][platform][precision]
    mode = configs["mode"]["quantize"]
    assert cfg["arch"] == arch_of(model)
    assert cfg["quantization"] == {"calib_method": "histogram", "num_calib_batches": 10, "percentile": 99.99,
                                   "skip_calibration": False}
    assert (cfg["data"], cfg["pretrained_from_file"], cfg["workspace"]) == (str(data), str(weights), str(workspace))
    assert cfg["raport_file"] == "raport.json"
    for key, value in preset.items():
        if key != "quantize":
            assert cfg[CONFIG_NAMES.get(key, key)] == value, key
    for key in ("evaluate", "training_only", "save_checkpoints", "print_freq"):
        assert cfg[key] == mode[key], key
    assert (cfg["evaluate"], cfg["save_checkpoints"]) == (False, True)
    assert cfg["precision"] == PRECISION_NAME[precision]
    assert cfg["memory_format"] == ("nhwc" if precision == "AMP" else "nchw")
    assert cfg["device"] == ("cpu" if platform == "CPU" else "auto")
    assert cfg["fast_inference"] is False  # quantized models are validated as they are, not BN-folded
    return cfg


def check_shell_expansion(family: Path, rel: Path, tmp_path: Path, fake_python: Path) -> None:
    """Run the script with a stub python: bash's expansion equals the parsed line, extra flags pass through, and a
    missing FP32_WEIGHTS stops it with its usage."""
    path = family / rel
    line = launch_line(path.read_text())
    calls = tmp_path / "calls"
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "NGPUS")}
    env.update(PATH=f"{fake_python}{os.pathsep}{os.environ['PATH']}", CALLS=str(calls), DATA_DIR=str(tmp_path / "d"))
    weights, workspace = tmp_path / "w.pth", tmp_path / "ws"
    proc = subprocess.run(["bash", str(path), str(weights), str(workspace), "--seed", "3"], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = [rec.split("\0") for rec in calls.read_text().split("\0\n") if rec]
    assert records == [substitute(line, family, tmp_path / "d", weights, workspace)[1:] + ["--seed", "3"]]

    proc = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0 and "FP32_WEIGHTS" in proc.stderr
