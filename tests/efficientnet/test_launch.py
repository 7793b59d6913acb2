"""launch.py (presets merged precision -> platform -> model -> mode, then CLI flags), main.py's value checks,
and multiproc.py's mapping of upstream's launcher flags onto torchrun."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common.cli_errors import run_cli
from common.launcher import build_parser as multiproc_parser
from common.launcher import main as multiproc_main
from common.launcher import torchrun_argv
from efficientnet import launch
from efficientnet import main as effnet_main

REPO = Path(__file__).resolve().parents[2]
LAUNCH = "efficientnet/launch.py"
MAIN = "efficientnet/main.py"
A100_B0_AMP = ["--model", "efficientnet-b0", "--precision", "AMP", "--mode", "convergence", "--platform", "DGXA100"]


def cli(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def in_process(entry, argv: list[str], capsys) -> subprocess.CompletedProcess:
    """Run a CLI's main under run_cli (as its `__main__` does) without a new interpreter; same result shape."""
    capsys.readouterr()
    try:
        run_cli(entry, argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A UserError: exactly one `error: ...` line on stderr, exit code 2, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], proc.stderr


def assert_usage_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """An argparse error follows the same convention: one `error: ...` line, exit code 2, no usage block."""
    assert_user_error(proc, *needles)


def dry_run(argv: list[str], capsys) -> dict:
    capsys.readouterr()
    launch.main(argv + ["--dry-run"])
    return json.loads(capsys.readouterr().out)


# --------------------------------------------------------------------------------------------- merge order

@pytest.fixture()
def layered_cfg(tmp_path) -> Path:
    """Each key is set at every level up to the one that must win: print_freq by all four, lr by precision,
    platform and model, momentum by precision and platform, end_lr by precision only."""
    cfg = {
        "precision": {"P": {"print_freq": 1, "lr": 0.001, "momentum": 0.1, "end_lr": 0.0001, "amp": True}},
        "platform": {"X": {"print_freq": 2, "lr": 0.002, "momentum": 0.2, "workers": 3}},
        "models": {"efficientnet-b0": {"X": {"P": {"print_freq": 3, "lr": 0.003, "batch_size": 7,
                                                   "memory_format": "nhwc"}}}},
        "mode": {"m": {"print_freq": 4, "epochs": 9, "evaluate": True, "save_checkpoints": False}},
    }
    path = tmp_path / "layers.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_merge_order(layered_cfg, tmp_path, capsys):
    argv = ["--cfg_file", str(layered_cfg), "--model", "efficientnet-b0", "--precision", "P", "--mode", "m",
            "--platform", "X", str(tmp_path)]
    cfg = dry_run(argv, capsys)
    assert cfg["print_freq"] == 4  # mode beats model, platform and precision
    assert cfg["lr"] == 0.003  # model beats platform and precision
    assert cfg["momentum"] == 0.2  # platform beats precision
    assert cfg["end_lr"] == 0.0001  # precision alone
    assert cfg["precision"] == "fp16" and cfg["workers"] == 3 and cfg["batch_size"] == 7
    assert cfg["memory_format"] == "nhwc" and cfg["epochs"] == 9
    assert cfg["evaluate"] is True and cfg["save_checkpoints"] is False
    assert cfg["arch"] == "efficientnet-b0"  # --model names the arch when no preset does
    assert cfg["weight_decay"] == 1e-4  # main.py's own default where no preset speaks


@pytest.mark.parametrize("flags_first", [False, True])
def test_cli_flags_beat_every_preset(layered_cfg, tmp_path, capsys, flags_first):
    presets = ["--cfg_file", str(layered_cfg), "--model", "efficientnet-b0", "--precision", "P", "--mode", "m",
               "--platform", "X"]
    flags = ["--print-freq", "11", "--lr", "0.5", "--momentum", "0.7", "--end-lr", "0.01", "-j", "1", "-b", "5",
             "--memory-format", "nchw", "--epochs", "12"]
    argv = flags + presets + [str(tmp_path)] if flags_first else presets + [str(tmp_path)] + flags
    cfg = dry_run(argv, capsys)
    assert (cfg["print_freq"], cfg["lr"], cfg["momentum"], cfg["end_lr"]) == (11, 0.5, 0.7, 0.01)
    assert (cfg["workers"], cfg["batch_size"], cfg["memory_format"], cfg["epochs"]) == (1, 5, "nchw", 12)


def test_cli_flags_beat_shipped_presets(tmp_path, capsys):
    cfg = dry_run(A100_B0_AMP + [str(tmp_path), "-b", "3", "--lr", "0.2", "--workers", "0", "--no-checkpoints",
                                 "--epochs", "20", "--arch", "efficientnet-widese-b0"], capsys)
    assert (cfg["batch_size"], cfg["lr"], cfg["workers"], cfg["epochs"]) == (3, 0.2, 0, 20)
    assert cfg["save_checkpoints"] is False and cfg["arch"] == "efficientnet-widese-b0"
    assert cfg["optimizer"] == "rmsprop" and cfg["precision"] == "fp16"  # the rest still from the presets


@pytest.mark.parametrize("family, model", [("efficientnet", "efficientnet-b0"), ("efficientnet", "efficientnet-b4"),
                                           ("gpunet", "gpunet-0"), ("gpunet", "gpunet-d2")])
@pytest.mark.parametrize("mode", ["benchmark_training", "benchmark_training_short", "benchmark_inference",
                                  "evaluate", "convergence"])
def test_every_mode_preset_passes_validation(family, model, mode, tmp_path, capsys):
    """The merged presets must make a valid configuration (a models' warmup longer than a benchmark's epochs once
    made every benchmark_training run stop at the first line)."""
    import importlib

    entry = importlib.import_module(f"{family}.launch")
    capsys.readouterr()
    entry.main(["--model", model, "--precision", "AMP", "--mode", mode, "--platform", "DGXA100", str(tmp_path),
                "--dry-run"])
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["arch"] == model


@pytest.mark.parametrize("platform, flags, expected", [
    ("DGXA100", [], (True, "reduce-overhead")),  # measured fastest on an H100: the presets train compiled
    ("H100", [], (True, "reduce-overhead")),
    ("DGXA100", ["--eager"], (False, "reduce-overhead")),
    ("DGXA100", ["--compile-mode", "default"], (True, "default")),
    ("DGX1V-16G", [], (False, "default")),  # not measured there: eager, as upstream
])
def test_training_compile_presets(platform, flags, expected, tmp_path, capsys):
    argv = ["--model", "efficientnet-b0", "--precision", "AMP", "--mode", "convergence", "--platform", platform]
    cfg = dry_run(argv + [str(tmp_path)] + flags, capsys)
    assert (cfg["compile"], cfg["compile_mode"]) == expected


# --------------------------------------------------------------------------------------------- launch errors

@pytest.mark.parametrize("args, needles", [
    (["--model", "efficientnet-b9", "--precision", "AMP", "--mode", "convergence", "--platform", "DGXA100"],
     ["unknown model", "efficientnet-b9"]),
    (["--model", "efficientnet-b0", "--precision", "AMP", "--mode", "convergence", "--platform", "DGX3"],
     ["unknown platform", "DGX3"]),
    (["--model", "efficientnet-b0", "--precision", "FP32", "--mode", "convergence", "--platform", "DGXA100"],
     ["no FP32 preset", "AMP, TF32"]),
    # upstream's README writes --platform DGX1V for EfficientNet, which has only DGX1V-16G / DGX1V-32G presets
    (["--model", "efficientnet-b0", "--precision", "AMP", "--mode", "convergence", "--platform", "DGX1V"],
     ["no preset for platform DGX1V", "DGX1V-16G"]),
    (["--model", "efficientnet-b0", "--precision", "BF16", "--mode", "convergence", "--platform", "DGXA100"],
     ["unknown precision", "BF16"]),
    (["--model", "efficientnet-b0", "--precision", "AMP", "--mode", "fast", "--platform", "DGXA100"],
     ["unknown mode", "fast"]),
])
def test_launch_preset_errors(args, needles, tmp_path):
    assert_user_error(cli(LAUNCH, *args, str(tmp_path)), *needles)


def test_launch_unknown_preset_key(tmp_path):
    cfg = yaml.safe_load((REPO / "efficientnet/configs.yml").read_text())
    cfg["models"]["efficientnet-b0"]["DGXA100"]["AMP"]["num_clases"] = 10  # a typo names no flag
    path = tmp_path / "typo.yml"
    path.write_text(yaml.safe_dump(cfg))
    assert_user_error(cli(LAUNCH, "--cfg_file", str(path), *A100_B0_AMP, str(tmp_path)),
                      "unknown option", "num_clases")


def test_launch_bad_cfg_files(tmp_path):
    assert_user_error(cli(LAUNCH, "--cfg_file", str(tmp_path / "none.yml"), *A100_B0_AMP, str(tmp_path)),
                      "not found")
    partial = tmp_path / "partial.yml"
    partial.write_text("precision: {}\nplatform: {}\n")
    assert_user_error(cli(LAUNCH, "--cfg_file", str(partial), *A100_B0_AMP, str(tmp_path)), "mode", "models")


def test_launch_missing_mode(tmp_path):
    args = [a for a in A100_B0_AMP if a not in ("--mode", "convergence")]
    assert_usage_error(cli(LAUNCH, *args, str(tmp_path)), "--mode")


def test_launch_leftover_argument_fails(tmp_path):
    assert_usage_error(cli(LAUNCH, *A100_B0_AMP, str(tmp_path), "--no-such-flag"), "--no-such-flag")


def test_launch_help_shows_both_parsers():
    proc = cli(LAUNCH, "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--cfg_file", "--model", "--mode", "--precision", "--platform",  # launch.py's
                 "--arch", "--batch-size", "--lr", "--workspace", "--raport-file", "--trt", "--dry-run"):  # main.py's
        assert flag in proc.stdout, flag


def test_launch_subprocess_dry_run(tmp_path):
    proc = cli(LAUNCH, *A100_B0_AMP, str(tmp_path), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(proc.stdout)
    assert (cfg["arch"], cfg["batch_size"], cfg["precision"], cfg["workers"]) == ("efficientnet-b0", 256, "fp16", 10)


# --------------------------------------------------------------------------------------------- main.py values

@pytest.mark.parametrize("args, needles", [
    (["--arch", "efficientnet-b42"], ["unknown model", "efficientnet-b42"]),
    (["--warmup", "5", "--epochs", "5"], ["--warmup", "--epochs"]),
    (["--jit", "script"], ["--jit script"]),
])
def test_main_value_errors(args, needles, tmp_path, capsys):
    assert_user_error(in_process(effnet_main.main, [str(tmp_path), "--dry-run", *args], capsys), *needles)


@pytest.mark.parametrize("args, needles", [
    (["--hflip", "1.5"], ["--hflip", "1.5"]),
    (["--trt", "maybe"], ["maybe"]),
    (["--jit", "trace"], ["--jit"]),
])
def test_main_parse_errors(args, needles, tmp_path, capsys):
    assert_usage_error(in_process(effnet_main.main, [str(tmp_path), "--dry-run", *args], capsys), *needles)


def test_main_script_error_is_one_line(tmp_path):
    """The same through the real script: run_cli is wired into main.py's __main__."""
    assert_user_error(cli(MAIN, str(tmp_path), "--dry-run", "--jit", "script"), "--jit script")


def test_main_crop_scale_reversed(tmp_path, capsys):
    proc = in_process(effnet_main.main, [str(tmp_path), "--dry-run", "--crop-scale", "0.9", "0.1"], capsys)
    assert_user_error(proc, "--crop-scale")


def test_bare_bool_flag_does_not_swallow_the_data_path(tmp_path, capsys):
    cfg = main_dry_run(["--trt", str(tmp_path)], capsys)
    assert cfg["data"] == str(tmp_path) and cfg["model_kwargs"]["trt"] is True


def main_dry_run(argv: list[str], capsys) -> dict:
    capsys.readouterr()
    effnet_main.main(argv + ["--dry-run"])
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("flags, expected", [
    ([], False),
    (["--trt", "False"], False),  # upstream's type=bool read any non-empty string, "False" included, as True
    (["--trt", "false"], False),
    (["--trt", "0"], False),
    (["--trt"], True),
    (["--trt", "true"], True),
    (["--trt", "True"], True),
    (["--trt", "1"], True),
])
def test_trt_is_a_real_boolean(flags, expected, tmp_path, capsys):
    cfg = main_dry_run([str(tmp_path), *flags], capsys)
    # Without the flag the builder's default applies: the Linear SE, or the conv SE of efficientnet-quant-*.
    assert cfg["model_kwargs"].get("trt", False) is expected
    assert ("trt" in cfg["model_kwargs"]) is bool(flags)


def test_trt_through_launch(tmp_path, capsys):
    assert dry_run(A100_B0_AMP + [str(tmp_path), "--trt", "False"], capsys)["model_kwargs"]["trt"] is False
    assert dry_run(A100_B0_AMP + [str(tmp_path), "--trt"], capsys)["model_kwargs"]["trt"] is True


# --------------------------------------------------------------------------------------------- multiproc.py

def test_torchrun_argv_defaults():
    args = multiproc_parser().parse_args(["launch.py", "--model", "efficientnet-b0", "/imagenet", "-b", "4"])
    argv = torchrun_argv(args)
    assert argv[:6] == ["--nnodes=1", "--node_rank=0", "--nproc_per_node=1", "--master_addr=127.0.0.1",
                        "--master_port=29500", "--local-ranks-filter=0"]  # console: rank 0 only, as upstream
    assert argv[6:] == ["launch.py", "--model", "efficientnet-b0", "/imagenet", "-b", "4"]


def test_torchrun_argv_maps_every_flag(tmp_path):
    args = multiproc_parser().parse_args([
        "--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "8", "--master_addr", "10.0.0.1",
        "--master_port", "1234", "--all_ranks_to_console", "--log_dir", str(tmp_path),
        "efficientnet/launch.py", "--nproc_per_node", "3", "--platform", "DGXA100"])
    argv = torchrun_argv(args)
    assert argv[:5] == ["--nnodes=2", "--node_rank=1", "--nproc_per_node=8", "--master_addr=10.0.0.1",
                        "--master_port=1234"]
    assert not any(a.startswith("--local-ranks-filter") for a in argv)
    assert f"--log-dir={tmp_path}" in argv and "--tee=3" in argv
    # the script's own flags pass through untouched, even one spelled like a launcher flag
    assert argv[argv.index("efficientnet/launch.py"):] == [
        "efficientnet/launch.py", "--nproc_per_node", "3", "--platform", "DGXA100"]


def test_torchrun_accepts_the_mapped_flags(tmp_path):
    from torch.distributed.run import get_args_parser

    args = multiproc_parser().parse_args(["--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "4",
                                          "--master_addr", "10.0.0.1", "--master_port", "1234",
                                          "--log_dir", str(tmp_path), "train.py", "--lr", "0.1"])
    ns = get_args_parser().parse_args(torchrun_argv(args))
    assert (ns.nnodes, ns.node_rank, ns.nproc_per_node) == ("2", 1, "4")
    assert (ns.master_addr, ns.master_port, ns.local_ranks_filter) == ("10.0.0.1", 1234, "0")
    assert (ns.log_dir, ns.tee) == (str(tmp_path), "3")
    assert ns.training_script == "train.py" and ns.training_script_args == ["--lr", "0.1"]


@pytest.mark.parametrize("flags", [["--nproc_per_node", "0"], ["--nnodes", "0"]])
def test_multiproc_rejects_zero(flags, capsys):
    assert_user_error(in_process(multiproc_main, [*flags, "efficientnet/launch.py"], capsys), "at least 1")
