"""GPUNet's recipes in both dialects.

ConvNets': the shell recipes under gpunet/training and gpunet/inference, one per (platform, model, precision) that
configs.yml defines, each valid bash and each resolving (by a dry run through launch.py) to the presets it names.
timm's: train.sh and the train_params/*.train.params command lines, which train.py must accept and resolve to
upstream's published recipes (upstream.md 2.5, with the dropout/drop-path values those runs really used).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from common.launcher import build_parser as multiproc_parser
from gpunet import launch
from gpunet import train as timm_train
from tests.shell_lines import expand

REPO = Path(__file__).resolve().parents[2]
GPUNET = REPO / "gpunet"
CONFIGS = yaml.safe_load((GPUNET / "configs.yml").read_text())
MODELS = ("gpunet-0", "gpunet-1", "gpunet-2", "gpunet-p0", "gpunet-p1", "gpunet-d1", "gpunet-d2")
KINDS = {"training": "convergence", "inference": "benchmark_inference"}
PRECISION_NAME = {"AMP": "fp16", "TF32": "tf32", "FP32": "fp32"}
FULL_SWEEP = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PLATFORMS = {"DGX1V-32G": ("AMP", "FP32"), "DGXA100": ("AMP", "TF32"), "H100": ("AMP", "TF32"), "CPU": ("FP32",)}

# Upstream's recipes (upstream.md 2.5): per-GPU batch, lr, resolution, val crop, teacher and its resolution; the
# drop-path column is what the runs really used (upstream's factories ignored --drop-connect).
RECIPES = {
    "gpunet-0": dict(batch=192, lr=0.06, size=320, crop=1.0, drop_path=0.2, teacher=None, teacher_size=None),
    "gpunet-1": dict(batch=192, lr=0.06, size=288, crop=1.0, drop_path=0.2, teacher=None, teacher_size=None),
    "gpunet-2": dict(batch=192, lr=0.06, size=384, crop=1.0, drop_path=0.2, teacher=None, teacher_size=None),
    "gpunet-d1": dict(batch=192, lr=0.06, size=456, crop=1.0, drop_path=0.0, teacher="tf_efficientnet_b5_ns",
                      teacher_size=456),
    "gpunet-d2": dict(batch=128, lr=0.06, size=528, crop=1.0, drop_path=0.0, teacher="tf_efficientnet_b6_ns",
                      teacher_size=528),
    "gpunet-p0": dict(batch=256, lr=0.08, size=224, crop=0.875, drop_path=0.2, teacher="tf_efficientnet_b2",
                      teacher_size=260),
    "gpunet-p1": dict(batch=256, lr=0.08, size=224, crop=0.875, drop_path=0.2, teacher="tf_efficientnet_b2",
                      teacher_size=260),
}
TEACHER_CKPT = "/teachers/teacher.pth.tar"


def distils(model: str, platform: str) -> bool:
    """Distilled models distil on the GPU platforms; the CPU presets train without a teacher."""
    return RECIPES[model]["teacher"] is not None and platform != "CPU"


# --------------------------------------------------------------------------------------------- ConvNets' dialect

def expected_scripts() -> set[Path]:
    out = set()
    for model in MODELS:
        for platform, precisions in CONFIGS["models"][model].items():
            for precision in precisions:
                for kind in KINDS:
                    out.add(Path(kind) / precision / f"{platform}_{model}_{precision}.sh")
    return out


def found_scripts() -> set[Path]:
    return {p.relative_to(GPUNET) for kind in KINDS for p in (GPUNET / kind).rglob("*.sh")}


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
    values = {"$HERE": str(GPUNET), "$DATA_DIR": str(data), "${1:-./}": str(workspace), "$NGPUS": "8",
              "$TEACHER_CHECKPOINT": TEACHER_CKPT}
    if bs is not None:
        values["$bs"] = str(bs)
        values["${bs}"] = str(bs)
    return expand(line, values, "${@:2}")


def launch_argv(tokens: list[str], kind: str, platform: str) -> list[str]:
    """Strip `python` and the multiproc.py prefix; GPU training goes through multiproc.py with one process per GPU,
    CPU training and every inference sweep run launch.py directly."""
    multi = kind == "training" and platform != "CPU"
    assert tokens[0] == "python"
    if Path(tokens[1]).name == "multiproc.py":
        assert multi, f"{kind} on {platform} runs one process, without multiproc.py"
        assert Path(tokens[1]) == GPUNET / "multiproc.py"
        margs = multiproc_parser().parse_args(tokens[2:])
        assert margs.nproc_per_node == 8 and margs.nnodes == 1
        assert Path(margs.script) == GPUNET / "launch.py"
        return list(margs.script_args)
    assert not multi, "GPU training recipes start one process per GPU through multiproc.py"
    assert Path(tokens[1]) == GPUNET / "launch.py"
    return tokens[2:]


def dry_run(argv: list[str], capsys) -> dict:
    capsys.readouterr()
    assert launch.main(argv + ["--dry-run"]) == 0  # exit status: a dry run trains nothing
    return json.loads(capsys.readouterr().out)


def check_config(cfg: dict, *, model, platform, precision, mode, batch_size, data, workspace, raport):
    preset = CONFIGS["models"][model][platform][precision]
    mode_preset = CONFIGS["mode"][mode]
    recipe = RECIPES[model]
    assert cfg["arch"] == model
    assert cfg["data"] == str(data)
    assert cfg["batch_size"] == batch_size
    for key in ("lr", "optimizer", "weight_decay", "optimizer_batch_size", "image_size", "crop_pct", "momentum",
                "rmsprop_alpha", "rmsprop_eps", "label_smoothing", "lr_schedule", "lr_decay_epochs", "lr_decay_rate",
                "warmup", "warmup_lr", "augmentation", "interpolation", "data_backend", "use_ema"):
        assert cfg[key] == preset[key], key
    # upstream's recipe, whatever the preset file says
    assert (cfg["optimizer"], cfg["rmsprop_eps"], cfg["rmsprop_alpha"]) == ("rmsproptf", 0.001, 0.9)
    assert (cfg["lr_schedule"], cfg["lr_decay_epochs"], cfg["lr_decay_rate"]) == ("step", 2.4, 0.97)
    assert (cfg["warmup"], cfg["warmup_lr"], cfg["weight_decay"]) == (3, 1e-6, 1e-5)
    assert (cfg["use_ema"], cfg["label_smoothing"], cfg["augmentation"]) == (0.9999, 0.1, "rand-m9-mstd0.5")
    assert (cfg["random_erasing"], cfg["random_erasing_mode"]) == (0.2, "pixel")
    assert (cfg["interpolation"], cfg["val_interpolation"]) == ("random", "bicubic")
    assert (cfg["lr"], cfg["image_size"], cfg["crop_pct"]) == (recipe["lr"], recipe["size"], recipe["crop"])
    assert cfg["model_kwargs"] == {"dropout": 0.2, "drop_path_rate": recipe["drop_path"]}
    # 8 x the recipe's per-GPU batch: 8 GPUs keep upstream's global batch, by accumulation where the batch is halved
    assert cfg["optimizer_batch_size"] == 8 * recipe["batch"]
    assert cfg["memory_format"] == preset.get("memory_format", "nchw")
    assert cfg["memory_format"] == ("nhwc" if precision == "AMP" else "nchw")
    assert cfg["precision"] == PRECISION_NAME[precision]
    if distils(model, platform):
        assert (cfg["teacher"], cfg["teacher_img_size"]) == (recipe["teacher"], recipe["teacher_size"])
        assert (cfg["kd_temperature"], cfg["kd_weight"]) == (1.0, 1.0)  # upstream: no temperature, weight 1
    else:
        assert cfg["teacher"] is None
    for key in ("evaluate", "training_only", "save_checkpoints", "print_freq"):
        assert cfg[key] == mode_preset[key], key
    assert cfg["epochs"] == mode_preset.get("epochs", preset["epochs"])
    if mode == "convergence":
        assert cfg["epochs"] == 450
        assert (cfg["evaluate"], cfg["training_only"], cfg["save_checkpoints"]) == (False, False, True)
    else:
        assert (cfg["evaluate"], cfg["training_only"], cfg["save_checkpoints"]) == (True, False, False)
    assert cfg["workers"] == CONFIGS["platform"][platform]["workers"]
    assert cfg["device"] == ("cpu" if platform == "CPU" else "auto")
    assert cfg["gpu_affinity"] == CONFIGS["platform"][platform].get("gpu_affinity", "none")
    assert cfg["raport_file"] == raport
    assert cfg["workspace"] == str(workspace)


def test_scripts_match_configs():
    found = found_scripts()
    expected = expected_scripts()
    assert not expected - found, f"missing recipes: {sorted(map(str, expected - found))}"
    assert not found - expected, f"recipes configs.yml does not define: {sorted(map(str, found - expected))}"
    assert len(expected) == 98  # 7 models x 7 (platform, precision) pairs x {training, inference}


def test_upstream_values_in_configs():
    for model in MODELS:
        recipe = RECIPES[model]
        assert {p: tuple(v) for p, v in CONFIGS["models"][model].items()} == PLATFORMS
        for platform, precisions in PLATFORMS.items():
            for precision in precisions:
                p = CONFIGS["models"][model][platform][precision]
                if platform == "CPU":
                    assert p["batch_size"] == (8 if model in ("gpunet-d1", "gpunet-d2") else 32)
                elif precision == "AMP":
                    assert p["batch_size"] == recipe["batch"]
                else:
                    assert p["batch_size"] == recipe["batch"] // 2
                assert p["optimizer_batch_size"] == 8 * recipe["batch"]
                assert (p["lr"], p["image_size"], p["epochs"]) == (recipe["lr"], recipe["size"], 450)
                assert (p["dropout"], p["drop_path_rate"]) == (0.2, recipe["drop_path"])
                assert p.get("teacher") == (recipe["teacher"] if distils(model, platform) else None)


@pytest.mark.parametrize("rel", sorted(found_scripts()), ids=ids)
def test_bash_syntax_and_shape(rel):
    path = GPUNET / rel
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
    text = (GPUNET / rel).read_text()
    line = launch_line(text)
    assert line.endswith(' "${@:2}"')
    if platform == "CPU":
        assert "multiproc.py" not in text and "NGPUS" not in text
    else:
        assert line.startswith('python "$HERE/multiproc.py" --nproc_per_node "$NGPUS" "$HERE/launch.py" ')
        assert 'NGPUS="${NGPUS:-8}"' in text.splitlines()
    assert ("TEACHER_CHECKPOINT" in text) == distils(model, platform)
    data, ws = tmp_path / "data", tmp_path / "ws"
    argv = launch_argv(substitute(line, data, ws, None), kind, platform)
    assert argv[:8] == ["--model", model, "--precision", precision, "--mode", "convergence", "--platform", platform]
    cfg = dry_run(argv, capsys)
    check_config(cfg, model=model, platform=platform, precision=precision, mode="convergence",
                 batch_size=CONFIGS["models"][model][platform][precision]["batch_size"],
                 data=data, workspace=ws, raport="raport.json")
    assert cfg["teacher_checkpoint"] == (TEACHER_CKPT if distils(model, platform) else None)


@pytest.mark.parametrize("rel", [r for r in SCRIPTS if r.parts[0] == "inference"], ids=ids)
def test_inference_recipe_dry_run(rel, tmp_path, capsys):
    kind, platform, model, precision = parse_name(rel)
    text = (GPUNET / rel).read_text()
    assert "multiproc.py" not in text, "inference sweeps run one process"
    assert "TEACHER_CHECKPOINT" not in text, "evaluation builds no teacher"
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


def stub_bin(tmp_path_factory, name: str) -> Path:
    """A command on PATH that records its argv (NUL-separated, one record per call) instead of running anything."""
    bindir = tmp_path_factory.mktemp(f"bin_{name}")
    stub = bindir / name
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" >> "$CALLS"\nprintf "\\n" >> "$CALLS"\n')
    stub.chmod(0o755)
    return bindir


@pytest.fixture(scope="module")
def fake_python(tmp_path_factory):
    return stub_bin(tmp_path_factory, "python")


@pytest.fixture(scope="module")
def fake_torchrun(tmp_path_factory):
    return stub_bin(tmp_path_factory, "torchrun")


def run_with_stub(cmd: list[str], bindir: Path, calls: Path, env: dict | None = None, cwd: Path | None = None,
                  ok: bool = True) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "NGPUS", "TEACHER_CHECKPOINT")}
    environ.update(PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", CALLS=str(calls), **(env or {}))
    proc = subprocess.run(cmd, env=environ, capture_output=True, text=True, cwd=cwd or calls.parent)
    if ok:
        assert proc.returncode == 0, proc.stderr
    records = [rec.split("\0") for rec in calls.read_text().split("\0\n") if rec] if calls.exists() else []
    return proc, records


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("rel", SCRIPTS, ids=ids)
def test_shell_expansion_matches_parse(rel, tmp_path, fake_python):
    """Run the real script with a stub python: the shell's expansion equals what the dry-run test parsed, extra
    flags are passed through, and the defaults ($DATA_DIR=/imagenet, NGPUS=8, workspace ./) apply."""
    kind, platform, model, precision = parse_name(rel)
    path = GPUNET / rel
    line = launch_line(path.read_text())
    teacher = {"TEACHER_CHECKPOINT": TEACHER_CKPT} if distils(model, platform) and kind == "training" else {}
    _, calls = run_with_stub(["bash", str(path), str(tmp_path / "ws"), "--seed", "3"], fake_python,
                             tmp_path / "calls1", env={"DATA_DIR": str(tmp_path / "data"), "NGPUS": "8", **teacher})
    sizes = sweep_values(path.read_text()) if kind == "inference" else [None]
    assert len(calls) == len(sizes)
    for argv, bs in zip(calls, sizes):
        assert argv == substitute(line, tmp_path / "data", tmp_path / "ws", bs)[1:] + ["--seed", "3"]

    _, defaults = run_with_stub(["bash", str(path)], fake_python, tmp_path / "calls2", env=teacher)
    first = defaults[0]
    assert "/imagenet" in first and first[first.index("--workspace") + 1] == "./"
    if platform != "CPU" and kind == "training":
        assert first[first.index("--nproc_per_node") + 1] == "8"
    assert "--nproc_per_node" not in first or (platform != "CPU" and kind == "training")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("rel", [r for r in SCRIPTS if r.parts[0] == "training"
                                 and distils(parse_name(r)[2], parse_name(r)[1])], ids=ids)
def test_distilled_recipe_needs_teacher_checkpoint(rel, tmp_path, fake_python):
    """Without $TEACHER_CHECKPOINT a distilled recipe refuses to start, with one line, before running anything."""
    proc, calls = run_with_stub(["bash", str(GPUNET / rel)], fake_python, tmp_path / "calls", ok=False)
    assert proc.returncode == 2 and calls == []
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "TEACHER_CHECKPOINT" in lines[0], proc.stderr
    assert RECIPES[parse_name(rel)[2]]["teacher"] in lines[0]


# --------------------------------------------------------------------------------------------- timm's dialect

PARAMS = {f"GPUNet-{v}": f"gpunet-{v.lower()}" for v in ("0", "1", "2", "D1", "D2", "P0", "P1")}
PARAMS_DIR = GPUNET / "train_params"
DATA_TOKEN = "${DATA_DIR:-/root/data/imagenet/}"


def params_command(name: str) -> list[str]:
    """The one command line of a .train.params file, shlex-split (the `#` lines are comments)."""
    text = (PARAMS_DIR / f"{name}.train.params").read_text()
    commands = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(commands) == 1, commands
    return shlex.split(commands[0])


def params_dry_run(name: str, capsys, data: Path) -> dict:
    tokens = params_command(name)
    assert tokens[:3] == ["./train.sh", "8", DATA_TOKEN]
    flags = [t.replace("$TEACHER_CHECKPOINT", TEACHER_CKPT) for t in tokens[3:]]
    assert not any("$" in t for t in flags)
    capsys.readouterr()
    timm_train.main([str(data), *flags, "--dry-run"])
    return json.loads(capsys.readouterr().out)


def test_train_params_files():
    assert {p.name for p in PARAMS_DIR.iterdir()} == {f"{n}.train.params" for n in PARAMS}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_train_params_comment(name):
    model = PARAMS[name]
    lines = (PARAMS_DIR / f"{name}.train.params").read_text().splitlines()
    assert lines[0].startswith("# ") and "--drop 0.3" in lines[0] and "dropout 0.2" in lines[0]
    assert ("TEACHER_CHECKPOINT" in lines[0]) == (RECIPES[model]["teacher"] is not None)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_train_params_resolve_to_the_recipe(name, tmp_path, capsys):
    model = PARAMS[name]
    recipe = RECIPES[model]
    cfg = params_dry_run(name, capsys, tmp_path)
    assert (cfg["arch"], cfg["image_size"], cfg["batch_size"], cfg["lr"]) == (
        model, recipe["size"], recipe["batch"], recipe["lr"])
    assert (cfg["optimizer"], cfg["rmsprop_eps"], cfg["weight_decay"]) == ("rmsproptf", 0.001, 1e-5)
    assert (cfg["lr_schedule"], cfg["lr_decay_epochs"], cfg["lr_decay_rate"]) == ("step", 2.4, 0.97)
    assert (cfg["warmup"], cfg["warmup_lr"], cfg["lr_schedule_epochs"]) == (3, 1e-6, 450)
    assert (cfg["use_ema"], cfg["best_from_ema"]) == (0.9999, True)
    assert (cfg["random_erasing"], cfg["random_erasing_mode"]) == (0.2, "pixel")
    assert (cfg["augmentation"], cfg["label_smoothing"], cfg["interpolation"]) == ("rand-m9-mstd0.5", 0.1, "random")
    assert (cfg["crop_pct"], cfg["num_classes"], cfg["precision"], cfg["workers"]) == (recipe["crop"], 1000, "fp16", 8)
    assert cfg["model_kwargs"] == {"dropout": 0.2, "drop_path_rate": recipe["drop_path"]}
    if recipe["teacher"]:
        assert (cfg["teacher"], cfg["teacher_img_size"]) == (recipe["teacher"], recipe["teacher_size"])
        assert (cfg["teacher_checkpoint"], cfg["test_teacher"]) == (TEACHER_CKPT, True)
    else:
        assert cfg["teacher"] is None and cfg["test_teacher"] is False


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_train_params_agree_with_configs_yml(name, tmp_path, capsys):
    """Both dialects hold one recipe: the timm line and the AMP presets of configs.yml resolve alike."""
    model = PARAMS[name]
    timm_cfg = params_dry_run(name, capsys, tmp_path)
    argv = ["--model", model, "--precision", "AMP", "--mode", "convergence", "--platform", "DGXA100", str(tmp_path),
            "--teacher-checkpoint", TEACHER_CKPT]
    convnets_cfg = dry_run(argv, capsys)
    for key in ("arch", "image_size", "batch_size", "lr", "optimizer", "rmsprop_eps", "weight_decay", "lr_schedule",
                "lr_decay_epochs", "lr_decay_rate", "warmup", "warmup_lr", "use_ema", "random_erasing",
                "random_erasing_mode", "augmentation", "label_smoothing", "interpolation", "crop_pct", "model_kwargs",
                "teacher", "precision", "momentum", "val_interpolation"):
        assert timm_cfg[key] == convnets_cfg[key], key
    if timm_cfg["teacher"]:
        assert timm_cfg["teacher_img_size"] == convnets_cfg["teacher_img_size"]
    assert timm_cfg["lr_schedule_epochs"] == convnets_cfg["epochs"] == 450


def test_train_params_run_450_epochs_as_upstream(tmp_path, capsys):
    """timm 0.4.12 adds --cooldown-epochs only to schedules that end (cosine); upstream's step recipes ran 450."""
    cfg = params_dry_run("GPUNet-0", capsys, tmp_path)
    assert (cfg["epochs"], cfg["lr_schedule_epochs"]) == (450, 450)


# Upstream's train_params files as NVIDIA published them (DeepLearningExamples, PyTorch/Classification/GPUNet/
# train_params, byte for byte; GPUNet-D1's ends in a dangling backslash). Four of them say `--test-teacher False`
# in timm's str2bool style, which train.py refused before it took optional booleans.
_PUBLISHED_HEAD = ("./train.sh 8 /root/data/imagenet/ \\\n--model gpunet_{m} --sched step --decay-epochs 2.4 "
                   "--decay-rate {dr} --opt rmsproptf \\\n-b {b} --epochs 450 \\\n--opt-eps {eps} -j 8 \\\n"
                   "--warmup-lr 1e-6 --weight-decay 1e-5 --drop 0.3 --drop-connect 0.2 --model-ema "
                   "--model-ema-decay 0.9999 \\\n--aa rand-m9-mstd0.5 --remode pixel --reprob 0.2 --lr {lr} "
                   "--num-classes 1000 --enable-distill {distill} --crop-pct {crop} \\\n--img-size {size} --amp")
_PUBLISHED_TEACHER = " \\\n--test-teacher False \\\n--teacher {teacher} \\\n--teacher-img-size {tsize}"
_PLAIN = dict(dr=".97", b=192, eps=".001", lr=".06", distill="False", crop="1.0")
_PRUNED = dict(dr="0.97", b=256, eps="0.001", lr="0.08", distill="True", crop="0.875", size=224,
               teacher="tf_efficientnet_b2", tsize=260)
PUBLISHED_PARAMS = {
    "GPUNet-0": _PUBLISHED_HEAD.format(m="0", size=320, **_PLAIN),
    "GPUNet-1": _PUBLISHED_HEAD.format(m="1", size=288, **_PLAIN),
    "GPUNet-2": _PUBLISHED_HEAD.format(m="2", size=384, **_PLAIN),
    "GPUNet-D1": (_PUBLISHED_HEAD + _PUBLISHED_TEACHER + " \\").format(
        m="d1", size=456, teacher="tf_efficientnet_b5_ns", tsize=456, **(_PLAIN | {"distill": "True"})),
    "GPUNet-D2": (_PUBLISHED_HEAD + _PUBLISHED_TEACHER).format(
        m="d2", size=528, teacher="tf_efficientnet_b6_ns", tsize=528, **(_PLAIN | {"b": 128, "distill": "True"})),
    "GPUNet-P0": (_PUBLISHED_HEAD + _PUBLISHED_TEACHER).format(m="p0", **_PRUNED),
    "GPUNet-P1": (_PUBLISHED_HEAD + _PUBLISHED_TEACHER).format(m="p1", **_PRUNED),
}


def test_published_params_are_the_published_text():
    """A guard on the reconstruction above: the sizes of upstream's files and the lines that matter."""
    sizes = {"GPUNet-0": 407, "GPUNet-1": 407, "GPUNet-2": 407, "GPUNet-D1": 491, "GPUNet-D2": 489,
             "GPUNet-P0": 491, "GPUNet-P1": 491}
    assert {name: len(text) for name, text in PUBLISHED_PARAMS.items()} == sizes
    assert PUBLISHED_PARAMS["GPUNet-D1"].endswith("--test-teacher False \\\n--teacher tf_efficientnet_b5_ns \\\n"
                                                  "--teacher-img-size 456 \\")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_published_params_parse(name, tmp_path, fake_torchrun, capsys):
    """Upstream's file, run by bash from gpunet/ as its README says, reaches train.py through train.sh; train.py
    takes every flag of it as upstream's did, distillation and --test-teacher included (the values of --drop and
    --drop-connect apply here, where upstream's factories ignored them)."""
    model = PARAMS[name]
    recipe = RECIPES[model]
    script = tmp_path / f"{name}.train.params"
    script.write_text(PUBLISHED_PARAMS[name])
    _, calls = run_with_stub(["bash", str(script)], fake_torchrun, tmp_path / "calls", cwd=GPUNET)
    assert len(calls) == 1 and calls[0][:3] == ["--nproc_per_node=8", str(GPUNET / "train.py"),
                                                "/root/data/imagenet/"]
    capsys.readouterr()
    timm_train.main([str(tmp_path), *calls[0][3:], "--dry-run"])
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["arch"], cfg["image_size"], cfg["batch_size"], cfg["lr"], cfg["crop_pct"]) == (
        model, recipe["size"], recipe["batch"], recipe["lr"], recipe["crop"])
    assert cfg["model_kwargs"] == {"dropout": 0.3, "drop_path_rate": 0.2}
    assert cfg["cli_args"]["enable_distill"] is (recipe["teacher"] is not None)
    assert cfg["cli_args"]["test_teacher"] is False  # `--test-teacher False` where it is given at all
    assert cfg["test_teacher"] is False
    if recipe["teacher"]:
        assert (cfg["teacher"], cfg["teacher_img_size"]) == (recipe["teacher"], recipe["teacher_size"])
    else:
        assert cfg["teacher"] is None


def test_train_sh_syntax():
    path = GPUNET / "train.sh"
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True).returncode == 0
    assert path.stat().st_mode & stat.S_IXUSR
    text = path.read_text()
    assert "set -euo pipefail" in text and "-m torch.distributed.launch" not in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_train_sh_forwards_to_torchrun(tmp_path, fake_torchrun):
    _, calls = run_with_stub(["bash", str(GPUNET / "train.sh"), "4", "/data/imagenet", "--model", "gpunet_1",
                              "--experiment", "a b", "--amp"], fake_torchrun, tmp_path / "calls")
    assert calls == [["--nproc_per_node=4", str(GPUNET / "train.py"), "/data/imagenet", "--model", "gpunet_1",
                      "--experiment", "a b", "--amp"]]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("args", [[], ["8"]])
def test_train_sh_usage(args, tmp_path, fake_torchrun):
    proc, calls = run_with_stub(["bash", str(GPUNET / "train.sh"), *args], fake_torchrun, tmp_path / "calls",
                                ok=False)
    assert proc.returncode == 2 and calls == []
    assert proc.stderr.strip().startswith("usage:") and "NUM_PROC DATA" in proc.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_train_params_line_runs_in_bash(name, tmp_path, fake_torchrun):
    """The command line as a user pastes it in gpunet/: bash expands it, train.sh hands everything to torchrun."""
    tokens = params_command(name)
    line = [ln for ln in (PARAMS_DIR / f"{name}.train.params").read_text().splitlines() if not ln.startswith("#")][0]
    env = {"DATA_DIR": "/my/imagenet", "TEACHER_CHECKPOINT": TEACHER_CKPT}
    _, calls = run_with_stub(["bash", "-c", line], fake_torchrun, tmp_path / "calls", env=env, cwd=GPUNET)
    flags = [t.replace("$TEACHER_CHECKPOINT", TEACHER_CKPT) for t in tokens[3:]]
    assert calls == [["--nproc_per_node=8", str(GPUNET / "train.py"), "/my/imagenet", *flags]]
    _, calls = run_with_stub(["bash", "-c", line], fake_torchrun, tmp_path / "calls2",
                             env={"TEACHER_CHECKPOINT": TEACHER_CKPT}, cwd=GPUNET)
    assert calls[0][2] == "/root/data/imagenet/"


# --------------------------------------------------------------------------------------------- quantization recipes

from tests.image_classification.quantization import recipe_checks  # noqa: E402

QUANT_SCRIPTS = sorted(recipe_checks.expected_scripts(CONFIGS))


def test_quantization_scripts_match_configs():
    assert recipe_checks.quantizing_models(CONFIGS) == ["gpunet-quant-0", "gpunet-quant-p0"]
    assert recipe_checks.found_scripts(GPUNET) == set(QUANT_SCRIPTS)
    assert len(QUANT_SCRIPTS) == 14  # 2 models x (3 GPU platforms x {AMP, FP32} + CPU FP32)


def test_qat_presets_keep_each_gpunet_resolution():
    """Upstream EfficientNet-B0's QAT recipe at each GPUNet's own resolution and crop, without the FP32 recipe's
    EMA, RandAugment, random erasing and label smoothing."""
    for model, size, crop in (("gpunet-quant-0", 320, 1.0), ("gpunet-quant-p0", 224, 0.875)):
        for platform, precisions in CONFIGS["models"][model].items():
            for preset in precisions.values():
                assert (preset["image_size"], preset["crop_pct"]) == (size, crop)
                assert (preset["epochs"], preset["optimizer"], preset["lr"], preset["lr_schedule"]) == (
                    10, "sgd", 0.0125, "cosine")
                assert (preset["augmentation"], preset["reprob"], preset["label_smoothing"]) == (None, 0.0, 0.0)
                assert "use_ema" not in preset and "teacher" not in preset
                assert preset["batch_size"] == (32 if platform == "CPU" else 128)


@pytest.mark.parametrize("rel", QUANT_SCRIPTS, ids=ids)
def test_quantization_recipe_dry_run(rel, tmp_path, capsys):
    cfg = recipe_checks.check_dry_run(GPUNET, CONFIGS, launch.main, lambda m: m.replace("gpunet-quant-", "gpunet-"),
                                      rel, tmp_path, capsys)
    assert (cfg["use_ema"], cfg["teacher"], cfg["random_erasing"]) == (None, None, 0.0)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("rel", QUANT_SCRIPTS, ids=ids)
def test_quantization_recipe_shell_expansion(rel, tmp_path, fake_python):
    recipe_checks.check_shell_expansion(GPUNET, rel, tmp_path, fake_python)
