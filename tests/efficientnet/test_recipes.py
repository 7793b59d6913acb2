"""The shell recipes under efficientnet/training and efficientnet/inference: one per (platform, model, precision)
that configs.yml defines, each valid bash, each resolving (by a dry run through launch.py) to the presets it names."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from common.launcher import build_parser as multiproc_parser
from efficientnet import launch
from tests.shell_lines import expand

REPO = Path(__file__).resolve().parents[2]
EFFNET = REPO / "efficientnet"
CONFIGS = yaml.safe_load((EFFNET / "configs.yml").read_text())
MODELS = ("efficientnet-b0", "efficientnet-b4", "efficientnet-widese-b0", "efficientnet-widese-b4")
KINDS = {"training": "convergence", "inference": "benchmark_inference"}
PRECISION_NAME = {"AMP": "fp16", "TF32": "tf32", "FP32": "fp32"}
FULL_SWEEP = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def expected_scripts() -> set[Path]:
    """Every (platform, precision) pair of each model in configs.yml, for both recipe kinds."""
    out = set()
    for model in MODELS:
        for platform, precisions in CONFIGS["models"][model].items():
            for precision in precisions:
                for kind in KINDS:
                    out.add(Path(kind) / precision / f"{platform}_{model}_{precision}.sh")
    return out


def found_scripts() -> set[Path]:
    return {p.relative_to(EFFNET) for kind in KINDS for p in (EFFNET / kind).rglob("*.sh")}


SCRIPTS = sorted(expected_scripts())


def ids(p: Path) -> str:
    return str(p)


def parse_name(rel: Path) -> tuple[str, str, str, str]:
    kind, precision, name = rel.parts
    platform, model, precision_again = name[: -len(".sh")].split("_")
    assert precision_again == precision
    return kind, platform, model, precision


def expected_sweep(platform: str, precision: str) -> list[int]:
    if platform == "CPU":
        return [1, 2, 4, 8, 16, 32]
    return FULL_SWEEP[:-1] if precision == "FP32" else FULL_SWEEP


def launch_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"\s*python\s.*launch\.py", ln)]
    assert len(lines) == 1, f"expected one python ... launch.py line, got {lines}"
    return lines[0]


def sweep_values(text: str) -> list[int]:
    m = re.search(r"^for bs in ([0-9 ]+); do$", text, re.M)
    assert m, "no `for bs in ...; do` loop"
    return [int(v) for v in m.group(1).split()]


def substitute(line: str, data: Path, workspace: Path, bs: int | None) -> list[str]:
    """shlex-split the launch line, fill in the shell variables and drop the pass-through "${@:2}"."""
    values = {"$HERE": str(EFFNET), "$DATA_DIR": str(data), "${1:-./}": str(workspace), "$NGPUS": "8"}
    if bs is not None:
        values["$bs"] = str(bs)
        values["${bs}"] = str(bs)
    return expand(line, values, "${@:2}")


def launch_argv(tokens: list[str], kind: str, platform: str) -> list[str]:
    """Strip `python` and the multiproc.py prefix; check the prefix on the way: GPU training goes through
    multiproc.py with one process per GPU, CPU training and every inference sweep run launch.py directly."""
    multi = kind == "training" and platform != "CPU"
    assert tokens[0] == "python"
    if Path(tokens[1]).name == "multiproc.py":
        assert multi, f"{kind} on {platform} runs one process, without multiproc.py"
        assert Path(tokens[1]) == EFFNET / "multiproc.py"
        margs = multiproc_parser().parse_args(tokens[2:])
        assert margs.nproc_per_node == 8 and margs.nnodes == 1
        assert Path(margs.script) == EFFNET / "launch.py"
        return list(margs.script_args)
    assert not multi, "GPU training recipes start one process per GPU through multiproc.py"
    assert Path(tokens[1]) == EFFNET / "launch.py"
    return tokens[2:]


def dry_run(argv: list[str], capsys) -> dict:
    capsys.readouterr()
    assert launch.main(argv + ["--dry-run"]) == 0  # exit status: a dry run trains nothing
    return json.loads(capsys.readouterr().out)


def check_config(cfg: dict, *, model, platform, precision, mode, batch_size, data, workspace, raport):
    preset = CONFIGS["models"][model][platform][precision]
    mode_preset = CONFIGS["mode"][mode]
    assert cfg["arch"] == model
    assert cfg["data"] == str(data)
    assert cfg["batch_size"] == batch_size
    for key in ("lr", "optimizer", "weight_decay", "optimizer_batch_size", "image_size", "momentum",
                "rmsprop_alpha", "rmsprop_eps", "label_smoothing", "mixup", "lr_schedule", "warmup",
                "augmentation", "interpolation", "data_backend"):
        assert cfg[key] == preset[key], key
    assert cfg["memory_format"] == preset.get("memory_format", "nchw")
    assert cfg["memory_format"] == ("nhwc" if precision == "AMP" else "nchw")
    assert cfg["precision"] == PRECISION_NAME[precision]
    for key in ("evaluate", "training_only", "save_checkpoints", "print_freq"):
        assert cfg[key] == mode_preset[key], key
    assert cfg["epochs"] == mode_preset.get("epochs", preset["epochs"])
    if mode == "convergence":
        assert cfg["epochs"] == 400
        assert (cfg["evaluate"], cfg["training_only"], cfg["save_checkpoints"]) == (False, False, True)
    else:
        assert (cfg["evaluate"], cfg["training_only"], cfg["save_checkpoints"]) == (True, False, False)
    assert cfg["workers"] == CONFIGS["platform"][platform]["workers"]
    assert cfg["device"] == ("cpu" if platform == "CPU" else "auto")
    assert cfg["gpu_affinity"] == CONFIGS["platform"][platform].get("gpu_affinity", "none")
    assert cfg["raport_file"] == raport
    assert cfg["workspace"] == str(workspace)
    assert cfg["use_ema"] is None and cfg["bn_weight_decay"] is False  # no EfficientNet preset sets them


def test_scripts_match_configs():
    found = found_scripts()
    expected = expected_scripts()
    assert not expected - found, f"missing recipes: {sorted(map(str, expected - found))}"
    assert not found - expected, f"recipes configs.yml does not define: {sorted(map(str, found - expected))}"
    assert len(expected) == 88  # 4 models x 11 (platform, precision) pairs x {training, inference}


def test_upstream_values_in_configs():
    """The presets the recipes rely on still hold upstream's numbers (README 1.4 table)."""
    per_gpu = {"T4": {"AMP": (128, 32), "FP32": (64, 16)}, "DGX1V-16G": {"AMP": (128, 32), "FP32": (64, 16)},
               "DGX1V-32G": {"AMP": (256, 64), "FP32": (128, 32)}, "DGXA100": {"AMP": (256, 128), "TF32": (256, 64)}}
    for model in MODELS:
        b4 = model.endswith("b4")
        for platform, sizes in per_gpu.items():
            assert set(CONFIGS["models"][model][platform]) == set(sizes)
            for precision, (bs_b0, bs_b4) in sizes.items():
                p = CONFIGS["models"][model][platform][precision]
                assert p["batch_size"] == (bs_b4 if b4 else bs_b0)
                assert (p["lr"], p["weight_decay"], p["image_size"]) == ((0.16, 5e-6, 380) if b4 else (0.08, 1e-5, 224))
                assert p["optimizer_batch_size"] == 4096 and p["optimizer"] == "rmsprop" and p["epochs"] == 400


@pytest.mark.parametrize("rel", sorted(found_scripts()), ids=ids)
def test_bash_syntax_and_shape(rel):
    path = EFFNET / rel
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True).returncode == 0
    assert path.stat().st_mode & stat.S_IXUSR, "recipes are executable"
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[1].startswith("# ") and "Usage: bash" in lines[1] and "[WORKSPACE]" in lines[1]
    assert "set -euo pipefail" in lines
    assert 'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"' in lines
    assert 'DATA_DIR="${DATA_DIR:-/imagenet}"' in lines


@pytest.mark.parametrize("rel", [r for r in SCRIPTS if r.parts[0] == "training"], ids=ids)
def test_training_recipe_dry_run(rel, tmp_path, capsys):
    kind, platform, model, precision = parse_name(rel)
    text = (EFFNET / rel).read_text()
    line = launch_line(text)
    assert line.endswith(' "${@:2}"')
    if platform == "CPU":
        assert "multiproc.py" not in text and "NGPUS" not in text
    else:
        assert line.startswith('python "$HERE/multiproc.py" --nproc_per_node "$NGPUS" "$HERE/launch.py" ')
        assert 'NGPUS="${NGPUS:-8}"' in text.splitlines()
    data, ws = tmp_path / "data", tmp_path / "ws"
    argv = launch_argv(substitute(line, data, ws, None), kind, platform)
    assert argv[:8] == ["--model", model, "--precision", precision, "--mode", "convergence", "--platform", platform]
    cfg = dry_run(argv, capsys)
    check_config(cfg, model=model, platform=platform, precision=precision, mode="convergence",
                 batch_size=CONFIGS["models"][model][platform][precision]["batch_size"],
                 data=data, workspace=ws, raport="raport.json")


@pytest.mark.parametrize("rel", [r for r in SCRIPTS if r.parts[0] == "inference"], ids=ids)
def test_inference_recipe_dry_run(rel, tmp_path, capsys):
    kind, platform, model, precision = parse_name(rel)
    text = (EFFNET / rel).read_text()
    assert "multiproc.py" not in text, "inference sweeps run one process"
    sizes = sweep_values(text)
    assert sizes == expected_sweep(platform, precision)
    line = launch_line(text)
    assert line.endswith(' "${@:2}"')
    data, ws = tmp_path / "data", tmp_path / "ws"
    for bs in sizes:
        argv = launch_argv(substitute(line, data, ws, bs), kind, platform)
        assert argv[:8] == ["--model", model, "--precision", precision, "--mode", "benchmark_inference",
                            "--platform", platform]
        cfg = dry_run(argv, capsys)
        check_config(cfg, model=model, platform=platform, precision=precision, mode="benchmark_inference",
                     batch_size=bs, data=data, workspace=ws, raport=f"raport_{bs}.json")


@pytest.fixture(scope="module")
def fake_python(tmp_path_factory):
    """A `python` on PATH that records its argv (one JSON list per call) instead of running anything."""
    bindir = tmp_path_factory.mktemp("bin")
    stub = bindir / "python"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" >> "$CALLS"\nprintf "\\n" >> "$CALLS"\n')
    stub.chmod(0o755)
    return bindir


def run_recipe(path: Path, fake_python: Path, calls: Path, *args: str, env: dict | None = None) -> list[list[str]]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "NGPUS")}
    environ.update(PATH=f"{fake_python}{os.pathsep}{os.environ['PATH']}", CALLS=str(calls), **(env or {}))
    proc = subprocess.run(["bash", str(path), *args], env=environ, capture_output=True, text=True, cwd=calls.parent)
    assert proc.returncode == 0, proc.stderr
    return [rec.split("\0") for rec in calls.read_text().split("\0\n") if rec]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("rel", SCRIPTS, ids=ids)
def test_shell_expansion_matches_parse(rel, tmp_path, fake_python):
    """Run the real script with a stub python: the shell's expansion equals what the dry-run test parsed, extra
    flags are passed through, and the defaults ($DATA_DIR=/imagenet, NGPUS=8, workspace ./) apply."""
    kind, platform, model, precision = parse_name(rel)
    path = EFFNET / rel
    line = launch_line(path.read_text())
    calls = run_recipe(path, fake_python, tmp_path / "calls1", str(tmp_path / "ws"), "--seed", "3",
                       env={"DATA_DIR": str(tmp_path / "data"), "NGPUS": "8"})
    sizes = sweep_values(path.read_text()) if kind == "inference" else [None]
    assert len(calls) == len(sizes)
    for argv, bs in zip(calls, sizes):
        assert argv == substitute(line, tmp_path / "data", tmp_path / "ws", bs)[1:] + ["--seed", "3"]

    defaults = run_recipe(path, fake_python, tmp_path / "calls2")
    first = defaults[0]
    assert "/imagenet" in first and first[first.index("--workspace") + 1] == "./"
    if platform != "CPU" and kind == "training":
        assert first[first.index("--nproc_per_node") + 1] == "8"
    assert "--nproc_per_node" not in first or (platform != "CPU" and kind == "training")


# --------------------------------------------------------------------------------------------- quantization recipes

from tests.image_classification.quantization import recipe_checks  # noqa: E402

QUANT_SCRIPTS = sorted(recipe_checks.expected_scripts(CONFIGS))


def test_quantization_scripts_match_configs():
    assert recipe_checks.quantizing_models(CONFIGS) == ["efficientnet-quant-b0", "efficientnet-quant-b4"]
    assert recipe_checks.found_scripts(EFFNET) == set(QUANT_SCRIPTS)
    assert len(QUANT_SCRIPTS) == 14  # 2 models x (3 GPU platforms x {AMP, FP32} + CPU FP32)


def test_upstream_qat_values_in_configs():
    """Upstream's efficientnet/quantization recipes (upstream.md 1.4): B0 10 epochs of SGD, B4 2 of RMSprop."""
    assert CONFIGS["mode"]["quantize"]["quantize"] is True
    for model, batch, recipe in (
        ("efficientnet-quant-b0", 128, dict(epochs=10, optimizer="sgd", lr=0.0125, momentum=0.89,
                                            weight_decay=4.5e-5, lr_schedule="cosine", image_size=224)),
        ("efficientnet-quant-b4", 32, dict(epochs=2, optimizer="rmsprop", rmsprop_alpha=0.853, rmsprop_eps=0.00422,
                                           lr=4.09e-6, momentum=0.9, weight_decay=9.714e-4, lr_schedule="linear",
                                           image_size=380)),
    ):
        for platform, precisions in CONFIGS["models"][model].items():
            for preset in precisions.values():
                assert {k: preset[k] for k in recipe} == recipe
                assert preset["batch_size"] == (batch if platform != "CPU" else batch // 4)
                assert (preset["label_smoothing"], preset["mixup"], preset["augmentation"], preset["warmup"]) == (
                    0.0, 0.0, None, 0)


@pytest.mark.parametrize("rel", QUANT_SCRIPTS, ids=ids)
def test_quantization_recipe_dry_run(rel, tmp_path, capsys):
    cfg = recipe_checks.check_dry_run(EFFNET, CONFIGS, launch.main, lambda model: model, rel, tmp_path, capsys)
    assert cfg["arch"].startswith("efficientnet-quant-b")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("rel", QUANT_SCRIPTS, ids=ids)
def test_quantization_recipe_shell_expansion(rel, tmp_path, fake_python):
    recipe_checks.check_shell_expansion(EFFNET, rel, tmp_path, fake_python)
