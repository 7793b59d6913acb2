"""gpunet/train.py, the timm dialect: flag mappings (dry runs), refused timm flags, real short runs on the digits
(timm's output layout, resume, learning, distillation), and the ConvNets dialect's family checks."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from common.cli_errors import run_cli
from common.dllogger import read_report
from efficientnet import main as effnet_main
from gpunet import main as gpunet_main
from gpunet import train
from image_classification.training.schedule import SCHEDULES, Schedule
from tests.conftest import assert_one_line_error, run_script

SHORT = ("--img-size 32 -b 32 --epochs 2 --cooldown-epochs 0 --prof 4 --cpu -j 0 --no-progress "
         "--model-ema --model-ema-decay 0.9 --reprob 0.2 --remode pixel --aa rand-m9-mstd0.5 --sched step "
         "--decay-epochs 0.5 --decay-rate 0.9 --opt rmsproptf --opt-eps 0.001 --lr 0.01 --warmup-epochs 0 "
         "--seed 1").split()
TIMM_COLUMNS = ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"]


def in_process(entry, argv: list[str], capsys) -> subprocess.CompletedProcess:
    """Run a CLI's main under run_cli (as its `__main__` does) without a new interpreter; same result shape."""
    capsys.readouterr()
    try:
        run_cli(entry, [str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def dry(argv: list, capsys) -> dict:
    capsys.readouterr()
    train.main([str(a) for a in argv] + ["--dry-run"])
    return json.loads(capsys.readouterr().out)


def fit(data: Path, output: Path, experiment: str, *extra) -> None:
    train.main([str(data), *SHORT, "--output", str(output), "--experiment", experiment, *map(str, extra)])


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def summary_rows(workspace: Path) -> list[dict]:
    with open(workspace / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def epoch_records(report: Path) -> list[dict]:
    return [r["data"] for r in read_report(report)
            if r["type"] == "LOG" and isinstance(r["step"], list) and len(r["step"]) == 1]


# --------------------------------------------------------------------------------------------- dry-run mappings

@pytest.mark.parametrize("opt, nesterov", [("sgd", True), ("nesterov", True), ("momentum", False)])
def test_sgd_flavours(opt, nesterov, tmp_path, capsys):
    cfg = dry([tmp_path, "--opt", opt], capsys)
    assert (cfg["optimizer"], cfg["nesterov"]) == ("sgd", nesterov)


def test_cooldown_extends_the_cosine_schedule(tmp_path, capsys):
    cfg = dry([tmp_path, "--sched", "cosine", "--epochs", "10", "--cooldown-epochs", "2"], capsys)
    assert (cfg["lr_schedule"], cfg["epochs"], cfg["lr_schedule_epochs"]) == ("cosine", 12, 10)
    cfg = dry([tmp_path, "--sched", "step", "--epochs", "10", "--cooldown-epochs", "2"], capsys)
    assert cfg["epochs"] == 10  # as timm 0.4.12: step decay never ends, so no cooldown is added


@pytest.mark.parametrize("ends, epochs", [(True, 12), (False, 10)])
def test_a_registered_schedule_is_a_sched_with_its_cooldown(ends, epochs, monkeypatch, tmp_path, capsys):
    """One entry in SCHEDULES is all --sched needs: accepted, listed, and cooled down as the entry declares."""
    proc = in_process(train.main, [tmp_path, "--sched", "half", "--dry-run"], capsys)
    assert_one_line_error(proc, "--sched half is not supported; use step, cosine or linear")
    monkeypatch.setitem(SCHEDULES, "half", Schedule(lambda schedule, progress: schedule.base / 2, ends=ends))
    cfg = dry([tmp_path, "--sched", "half", "--epochs", "10", "--cooldown-epochs", "2"], capsys)
    assert (cfg["lr_schedule"], cfg["epochs"], cfg["lr_schedule_epochs"]) == ("half", epochs, 10)
    assert train.schedule_names() == ["step", "cosine", "linear", "half"]


@pytest.mark.parametrize("flag", ["--drop-path", "--drop-connect"])
def test_drop_connect_is_drop_path(flag, tmp_path, capsys):
    cfg = dry([tmp_path, flag, "0.1", "--drop", "0.3"], capsys)
    assert cfg["model_kwargs"] == {"dropout": 0.3, "drop_path_rate": 0.1}


def test_model_defaults_leave_model_kwargs_empty(tmp_path, capsys):
    assert dry([tmp_path], capsys)["model_kwargs"] == {}  # the builder's own defaults (0.2 / 0.2)


def test_model_ema_and_amp(tmp_path, capsys):
    cfg = dry([tmp_path, "--model-ema", "--model-ema-decay", "0.999", "--amp"], capsys)
    assert (cfg["use_ema"], cfg["best_from_ema"], cfg["precision"]) == (0.999, True, "fp16")
    cfg = dry([tmp_path], capsys)
    assert (cfg["use_ema"], cfg["precision"]) == (None, "fp32")
    assert dry([tmp_path, "--native-amp"], capsys)["precision"] == "fp16"


def test_data_backend_compile_mode_and_stream_priority(tmp_path, capsys):
    """The core features the ConvNets dialect has had, under timm's spelling where timm has one."""
    cfg = dry([tmp_path, "--data-backend", "pytorch-gpu", "--torchcompile", "--torchcompile-mode", "reduce-overhead",
               "--stream-priority", "normal"], capsys)
    assert (cfg["data_backend"], cfg["compile"], cfg["compile_mode"], cfg["stream_priority"]) == (
        "pytorch-gpu", True, "reduce-overhead", "normal")
    cfg = dry([tmp_path], capsys)
    assert (cfg["data_backend"], cfg["compile"], cfg["compile_mode"], cfg["stream_priority"]) == (
        "pytorch", False, "default", "high")


def test_deterministic_compile_options_and_fused_optimizer(tmp_path, capsys):
    """The ConvNets dialect's training extensions, reachable from timm's train.py under the same spelling."""
    cfg = dry([tmp_path, "--deterministic", "--torchcompile", "--compile-option", "realize_reads_threshold=4",
               "--compile-option", "max_autotune=True", "--fused-optimizer", "off"], capsys)
    assert (cfg["deterministic"], cfg["compile_options"], cfg["fused_optimizer"]) == (
        True, {"realize_reads_threshold": 4, "max_autotune": True}, "off")
    cfg = dry([tmp_path], capsys)
    assert (cfg["deterministic"], cfg["compile_options"], cfg["fused_optimizer"]) == (False, {}, "auto")


def test_a_malformed_compile_option_is_one_line():
    proc = run_script("gpunet/train.py", "/nonexistent", "--compile-option", "novalue")
    assert_one_line_error(proc, "--compile-option", "expected KEY=VALUE")


def test_trains_on_synthetic_data_without_a_folder(tmp_path, capsys):
    train.main(["--data-backend", "synthetic", "--num-classes", "10", "--img-size", "32", "-b", "8", "--epochs", "1",
                "--prof", "2", "--warmup-epochs", "0", "--cpu", "--no-progress", "--output", str(tmp_path),
                "--experiment", "synthetic"])
    rows = summary_rows(tmp_path / "synthetic")
    assert len(rows) == 1 and float(rows[0]["train_loss"]) > 0


@pytest.mark.parametrize("model, size", [("gpunet_0", 320), ("gpunet_2", 384), ("gpunet_p1", 224),
                                         ("GPUNet-D2", 528), ("0.65ms", 320)])
def test_img_size_defaults_to_the_models(model, size, tmp_path, capsys):
    """Upstream crashed without --img-size; here it falls back to the model's resolution."""
    cfg = dry([tmp_path, "--model", model], capsys)
    assert cfg["image_size"] == size
    assert dry([tmp_path, "--model", model, "--img-size", "64"], capsys)["image_size"] == 64


def test_config_file_defaults_lose_to_the_command_line(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"lr": 0.5, "batch-size": 7, "opt": "momentum", "model": "gpunet_1",
                                      "model_ema": True}))
    cfg = dry([tmp_path, "-c", config, "--lr", "0.1"], capsys)
    assert (cfg["lr"], cfg["batch_size"], cfg["optimizer"], cfg["nesterov"]) == (0.1, 7, "sgd", False)
    assert (cfg["arch"], cfg["use_ema"]) == ("gpunet-1", 0.9998)


def test_config_file_typo_is_one_line(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("lr_nosie: 0.5\n")
    assert_one_line_error(in_process(train.main, [tmp_path, "-c", config, "--dry-run"], capsys), "lr_nosie")


def test_output_and_experiment_make_the_workspace(tmp_path, capsys):
    cfg = dry([tmp_path, "--output", tmp_path / "runs", "--experiment", "exp1"], capsys)
    assert cfg["workspace"] == str(tmp_path / "runs" / "exp1")  # upstream forced <output>/checkpoints
    cfg = dry([tmp_path, "--output", tmp_path / "runs"], capsys)
    assert Path(cfg["workspace"]).parent == tmp_path / "runs" and "gpunet-0-320" in Path(cfg["workspace"]).name


# --------------------------------------------------------------------------------------------- refused flags

def _flag_and_value(dest: str, default) -> list[str]:
    """The command line that sets `dest` to something other than its default."""
    action = next(a for a in train.build_parser()._actions if a.dest == dest)
    flag = next(s for s in action.option_strings if s.startswith("--"))
    if action.nargs == 0:
        return [flag]
    if default is None:
        return [flag, "0.5"]
    if isinstance(default, (int, float)):
        return [flag, str(default + 2)]
    return [flag, f"{default}x"]


@pytest.mark.parametrize("dest, default, why", train.UNSUPPORTED, ids=[u[0] for u in train.UNSUPPORTED])
def test_unsupported_flags_are_refused(dest, default, why, tmp_path, capsys):
    argv = _flag_and_value(dest, default)
    proc = in_process(train.main, [tmp_path, *argv, "--dry-run"], capsys)
    assert_one_line_error(proc, argv[0], "not supported")


def test_unsupported_flag_through_the_script(tmp_path):
    proc = run_script("gpunet/train.py", tmp_path, "--jsd", "--dry-run")
    assert_one_line_error(proc, "--jsd", "not supported")


def test_defaults_of_unsupported_flags_are_accepted(tmp_path, capsys):
    """Spelling a refused flag with its default value (as timm's args.yaml files do) is fine."""
    cfg = dry([tmp_path, "--clip-mode", "norm", "--eval-metric", "top1", "--tta", "0", "--lr-cycle-limit", "1"],
              capsys)
    assert cfg["arch"] == "gpunet-0"


# --------------------------------------------------------------------------------------------- real runs

@pytest.fixture(scope="module")
def short_run(digits_root, tmp_path_factory) -> tuple[Path, Path]:
    """Two timm-style epochs of GPUNet-0 on the digits, every recipe feature on: (workspace, DLLogger report)."""
    output = tmp_path_factory.mktemp("short")
    report = output / "dll.json"  # outside the run folder (upstream's default was /logs/log.json)
    fit(digits_root, output, "x", "--dllogger-name", report)
    return output / "x", report


@pytest.fixture(scope="module")
def long_run(digits_root, tmp_path_factory) -> Path:
    """The same run for three epochs uninterrupted, keeping one per-epoch checkpoint."""
    output = tmp_path_factory.mktemp("long")
    fit(digits_root, output, "x", "--epochs", 3, "--checkpoint-hist", 1)
    return output / "x"


def test_timm_output_layout(short_run):
    workspace, report = short_run
    names = {p.name for p in workspace.iterdir()}
    assert {"last.pth.tar", "model_best.pth.tar", "checkpoint-0.pth.tar", "checkpoint-1.pth.tar", "summary.csv",
            "args.yaml"} <= names
    assert not any(n.startswith("checkpoint-2") for n in names)

    rows = summary_rows(workspace)
    assert list(rows[0]) == TIMM_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(float(r["train_loss"]) > 0 and 0 <= float(r["eval_top1"]) <= 100 for r in rows)
    assert float(rows[1]["lr"]) < float(rows[0]["lr"]) <= 0.01  # step decay 0.9 every half epoch

    args = yaml.safe_load((workspace / "args.yaml").read_text())
    assert (args["model"], args["opt"], args["sched"], args["img_size"]) == ("gpunet_0", "rmsproptf", "step", 32)
    assert (args["model_ema"], args["model_ema_decay"], args["reprob"], args["remode"]) == (True, 0.9, 0.2, "pixel")
    assert args["aa"] == "rand-m9-mstd0.5" and args["experiment"] == "x"

    last = load(workspace / "last.pth.tar")
    assert last["arch"] == "gpunet-0" and "state_dict_ema" in last and last["args"]["opt"] == "rmsproptf"
    epochs = epoch_records(report)
    assert len(epochs) == 2 and all("train.loss" in e and "val_ema.top1" in e for e in epochs)
    assert not (workspace / "log.json").exists()  # the report went where --dllogger-name said


def test_checkpoint_hist_keeps_the_best(long_run):
    kept = sorted(p.name for p in long_run.glob("checkpoint-*.pth.tar"))
    assert len(kept) == 1
    best = load(long_run / "model_best.pth.tar")
    assert kept == [f"checkpoint-{best['best_epoch']}.pth.tar"]
    assert len(summary_rows(long_run)) == 3


def test_resume_continues_exactly(short_run, long_run, digits_root, tmp_path, capsys):
    """--resume last.pth.tar --epochs 3 after two epochs runs epoch 2 only and ends with the weights of the
    uninterrupted three-epoch run, bit for bit (CPU)."""
    workspace = tmp_path / "x"
    shutil.copytree(short_run[0], workspace)
    capsys.readouterr()
    fit(digits_root, tmp_path, "x", "--epochs", 3, "--resume", workspace / "last.pth.tar")
    assert "at epoch 2" in capsys.readouterr().out  # "=> resumed .../last.pth.tar at epoch 2"
    rows = summary_rows(workspace)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert (workspace / "checkpoint-2.pth.tar").exists()
    a, b = load(long_run / "last.pth.tar"), load(workspace / "last.pth.tar")
    assert a["epoch"] == b["epoch"] == 3
    for key in ("state_dict", "state_dict_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert summary_rows(long_run)[2] == rows[2]


def test_gpunet0_learns_the_digits(digits_root, tmp_path):
    train.main([str(digits_root), "--img-size", "32", "-b", "32", "--epochs", "3", "--cooldown-epochs", "0",
                "--prof", "20", "--sched", "cosine", "--lr", "0.05", "--opt", "momentum", "--scale", "0.6", "1",
                "--hflip", "0", "--color-jitter", "0", "--train-interpolation", "bicubic", "--warmup-epochs", "1",
                "--warmup-lr", "0.005", "--cpu", "-j", "0", "--no-progress", "--seed", "1",
                "--output", str(tmp_path), "--experiment", "learn"])
    losses = [float(r["train_loss"]) for r in summary_rows(tmp_path / "learn")]
    assert len(losses) == 3 and losses[-1] < losses[0], losses


# --------------------------------------------------------------------------------------------- distillation

DISTIL = ["--img-size", "32", "-b", "32", "--epochs", "1", "--cooldown-epochs", "0", "--warmup-epochs", "0",
          "--prof", "3", "--cpu", "-j", "0", "--no-progress", "--seed", "1"]


@pytest.fixture()
def teacher_ckpt(trained_digits) -> Path:
    return trained_digits[1] / "model_best.pth.tar"


def test_distillation_through_the_cli(digits_root, teacher_ckpt, tmp_path):
    train.main([str(digits_root), *DISTIL, "--output", str(tmp_path), "--experiment", "kd", "--enable-distill",
                "True", "--teacher", "efficientnet-b0", "--teacher-checkpoint", str(teacher_ckpt),
                "--teacher-img-size", "32", "--test-teacher"])
    records = read_report(tmp_path / "kd" / "log.json")
    epochs = epoch_records(tmp_path / "kd" / "log.json")
    assert epochs and all("train.kd_loss" in e and "train.base_loss" in e for e in epochs)
    assert any(r["type"] == "LOG" and r["step"] == "TEACHER" for r in records)


def test_enable_distill_false_ignores_the_teacher(tmp_path, capsys):
    cfg = dry([tmp_path, "--enable-distill", "False", "--teacher", "efficientnet-b0", "--test-teacher"], capsys)
    assert (cfg["teacher"], cfg["test_teacher"]) == (None, False)


TEACHER = ["--teacher", "efficientnet-b0", "--teacher-checkpoint", "/t.pth"]


@pytest.mark.parametrize("flag", ["--enable-distill", "--test-teacher"])
@pytest.mark.parametrize("words, expected", [
    ([], True),  # bare: true, as timm's str2bool with nargs="?" and const=True
    (["True"], True), (["true"], True), (["yes"], True), (["1"], True), (["t"], True), (["y"], True),
    (["False"], False), (["false"], False), (["no"], False), (["0"], False), (["f"], False), (["n"], False),
])
def test_str2bool_flags_take_every_form(flag, words, expected, tmp_path, capsys):
    """Both of upstream train.py's optional booleans, bare or with any of str2bool's words, before the data
    directory (a bare flag must not take it as its value) and after it, and in the --flag=value form."""
    other = "--test-teacher" if flag == "--enable-distill" else "--enable-distill"
    for argv in ([flag, *words, str(tmp_path), other, *TEACHER],
                 [str(tmp_path), *TEACHER, other, flag, *words]):
        args = train.parse_args(argv)
        assert args.data_dir == str(tmp_path)
        assert (getattr(args, flag[2:].replace("-", "_")), getattr(args, other[2:].replace("-", "_"))) == (
            expected, True)
    if words:
        assert getattr(train.parse_args([str(tmp_path), f"{flag}={words[0]}"]), flag[2:].replace("-", "_")) is \
            expected
    cfg = dry([tmp_path, *TEACHER, "--enable-distill", "--test-teacher", *words], capsys)
    assert cfg["test_teacher"] is expected


@pytest.mark.parametrize("argv", [
    ["{data}", "--test-teacher", "maybe"],
    ["{data}", "--test-teacher=maybe"],
    ["{data}", "--enable-distill", "maybe", "--teacher", "efficientnet-b0"],
])
def test_bad_boolean_is_one_line(argv, tmp_path, capsys):
    argv = [a.format(data=tmp_path) for a in argv]
    flag = next(a.split("=")[0] for a in argv if a.startswith(("--test-teacher", "--enable-distill")))
    proc = in_process(train.main, [*argv, "--dry-run"], capsys)
    assert_one_line_error(proc, flag, "expected true or false", "'maybe'")


def test_upstream_recipe_tail_test_teacher_false(tmp_path, capsys):
    """The tail of upstream's GPUNet-D1/D2/P0/P1 lines: --test-teacher False between other flags."""
    cfg = dry([tmp_path, "--enable-distill", "True", "--img-size", "456", "--amp", "--test-teacher", "False",
               "--teacher", "efficientnet-b0", "--teacher-img-size", "456", "--teacher-checkpoint", "/t.pth"], capsys)
    assert (cfg["teacher"], cfg["test_teacher"], cfg["teacher_img_size"]) == ("efficientnet-b0", False, 456)


def test_distill_without_teacher_is_one_line(tmp_path, capsys):
    proc = in_process(train.main, [tmp_path, "--enable-distill", "True", "--dry-run"], capsys)
    assert_one_line_error(proc, "--enable-distill", "--teacher")


def test_teacher_checkpoint_of_another_architecture_is_one_line(digits_root, teacher_ckpt, tmp_path, capsys):
    proc = in_process(train.main, [digits_root, *DISTIL, "--output", tmp_path, "--experiment", "kd",
                                   "--enable-distill", "--teacher", "efficientnet-b4", "--teacher-checkpoint",
                                   teacher_ckpt], capsys)
    assert_one_line_error(proc, "efficientnet-b4")
    assert not (tmp_path / "kd" / "last.pth.tar").exists()


# One bad value per row, as each dialect spells it, and the words its message must hold: the timm dialect's messages
# name timm's flags (TrainingConfig.validate is shared, the flag names are the dialect's).
SAME_MISTAKE = [
    (["--warmup-epochs", "5", "--epochs", "2"], "--warmup-epochs (5.0) must be shorter than --epochs (2)",
     ["--warmup", "5", "--epochs", "2"], "--warmup (5.0) must be shorter than --epochs (2)"),
    (["--model-ema", "--model-ema-decay", "1.5"], "--model-ema-decay takes a decay in (0, 1)",
     ["--use-ema", "1.5"], "--use-ema takes a decay in (0, 1)"),
    (["-b", "0"], "-b/--batch-size must be at least 1", ["-b", "0"], "-b/--batch-size"),
    (["--smoothing", "1"], "--smoothing must be in [0, 1)", ["--label-smoothing", "1"], "--label-smoothing must be"),
    (["--scale", "0.5", "0.1"], "--scale needs 0 < MIN <= MAX <= 1",
     ["--crop-scale", "0.5", "0.1"], "--crop-scale needs 0 < MIN <= MAX <= 1"),
    (["--img-size", "4"], "--img-size must be at least 8", ["--image-size", "4"], "--image-size must be at least 8"),
    (["-j", "-1"], "-j/--workers must not be negative", ["-j", "-1"], "-j/--workers must not be negative"),
    (["--log-interval", "0"], "--log-interval must be at least 1", ["--print-freq", "0"], "--print-freq"),
    (["--num-classes", "0"], "--num-classes must be at least 1", ["--num_classes", "0"], "--num_classes"),
    (["--ratio", "2", "1"], "--ratio must be positive and ordered", None, None),
    (["-vb", "0"], "the validation batch size (-b/--batch-size times -vb) must be at least 1", None, None),
    (["--momentum", "-1"], "--momentum must be in [0, 1), got -1.0", None, None),
    (["--drop", "1.5"], "--drop must be in [0, 1), got 1.5", None, None),
    (["--drop-path", "1"], "--drop-path must be in [0, 1), got 1.0", ["--drop_path_rate", "1"], "--drop_path_rate"),
    (["--cutmix", "inf"], "--cutmix takes an alpha >= 0 (0: off), got inf", None, None),
    (["--weight-decay", "-1"], "--weight-decay must be a finite number >= 0", None, None),
    (["--crop-pct", "1.5"], "--crop-pct is the fraction of the resized image kept, in (0, 1]", None, None),
    (["--lr", "nan"], "--lr must be a finite number >= 0, got nan", None, None),
    (["--img-size", "100000", "-b", "64"], "--img-size 100000 cannot fit", None, None),
    (["--clip-grad", "-1"], "--clip-grad takes a gradient norm >= 0", ["--clip-grad", "-1"],
     "--clip-grad takes a gradient norm >= 0"),
    (["--torchcompile", "--torchcompile-mode", "fast"], "--torchcompile-mode: invalid choice",
     ["--compile-mode", "fast"], "--compile-mode: invalid choice"),
]


@pytest.mark.parametrize("timm_argv, timm_words", [(row[0], row[1]) for row in SAME_MISTAKE])
def test_timm_dialect_messages_name_timm_flags(timm_argv, timm_words, tmp_path, capsys):
    proc = in_process(train.main, [tmp_path, *timm_argv, "--dry-run"], capsys)
    assert_one_line_error(proc, timm_words)


@pytest.mark.parametrize("convnets_argv, convnets_words", [(row[2], row[3]) for row in SAME_MISTAKE if row[2]])
def test_convnets_dialect_messages_name_convnets_flags(convnets_argv, convnets_words, tmp_path, capsys):
    proc = in_process(effnet_main.main, [tmp_path, *convnets_argv, "--dry-run"], capsys)
    assert_one_line_error(proc, convnets_words)


# An error found after validation, while the run starts, names the flag as each dialect spells it too.
RESUME_ANOTHER_ARCH = [
    (train.main, ["--model", "gpunet_0", "--img-size", 32, "-b", 32, "--output", "{out}", "--experiment", "run"],
     "pick the matching --model"),
    (gpunet_main.main, ["--arch", "gpunet-0", "--image-size", 32, "-b", 32, "--workspace", "{out}"],
     "pick the matching --arch"),
]


@pytest.mark.parametrize("entry, argv, words", RESUME_ANOTHER_ARCH, ids=["timm", "convnets"])
def test_resuming_another_architecture_names_the_dialects_model_flag(entry, argv, words, digits_root, tmp_path,
                                                                     capsys):
    checkpoint = tmp_path / "gpunet-1.pth.tar"
    torch.save({"state_dict": {}, "epoch": 1, "arch": "gpunet-1"}, checkpoint)
    argv = [digits_root, *(str(a).format(out=tmp_path / "out") for a in argv), "--resume", checkpoint, "--cpu",
            "-j", 0, "--no-progress"]
    assert_one_line_error(in_process(entry, argv, capsys), "was trained as gpunet-1, not gpunet-0", words)


def test_class_count_mismatch_names_the_timm_flag(digits_root, tmp_path, capsys):
    proc = in_process(train.main, [digits_root, "--num-classes", 3, "--output", tmp_path, "--img-size", 32,
                                   "-b", 32, "--cpu", "-j", 0, "--no-progress"], capsys)
    assert_one_line_error(proc, "10 classes but --num-classes is 3", "pass --num-classes 10")


def test_output_under_a_file_is_one_line_naming_the_path(digits_root, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    argv = [digits_root, "--output", blocker / "out", "--experiment", "run", "--img-size", 32, "-b", 32,
            "--epochs", 1, "--warmup-epochs", 0, "--cpu", "-j", 0, "--no-progress"]
    assert_one_line_error(in_process(train.main, argv, capsys), f"{blocker / 'out' / 'run'}: Not a directory")
    monkeypatch.setenv("IMAGE_CLASSIFICATION_DEBUG", "1")
    with pytest.raises(NotADirectoryError):
        run_cli(train.main, [str(a) for a in argv])


# --------------------------------------------------------------------------------------------- ConvNets' dialect

def test_gpunet_main_defaults_and_model_flags(tmp_path, capsys):
    capsys.readouterr()
    gpunet_main.main([str(tmp_path), "--dry-run"])
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["arch"], cfg["model_kwargs"]) == ("gpunet-0", {})
    gpunet_main.main([str(tmp_path), "--arch", "gpunet-p0", "--dropout", "0.3", "--drop_path_rate", "0.1",
                      "--model_config", "net.json", "--dry-run"])
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["arch"] == "gpunet-p0"
    assert cfg["model_kwargs"] == {"dropout": 0.3, "drop_path_rate": 0.1, "model_config": "net.json"}


def test_convnets_dialect_clips_gradients_and_syncs_batchnorm(tmp_path, capsys):
    """The core features the timm dialect has had, spelt in the ConvNets dialect's style."""
    capsys.readouterr()
    effnet_main.main([str(tmp_path), "--clip-grad", "2.5", "--sync-bn", "--dry-run"])
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["clip_grad"], cfg["sync_bn"]) == (2.5, True)
    effnet_main.main([str(tmp_path), "--dry-run"])
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["clip_grad"], cfg["sync_bn"]) == (None, False)


def test_gpunet_main_refuses_efficientnet(tmp_path, capsys):
    proc = in_process(gpunet_main.main, [tmp_path, "--arch", "efficientnet-b0", "--dry-run"], capsys)
    assert_one_line_error(proc, "efficientnet-b0", "efficientnet/main.py")


def test_efficientnet_main_refuses_gpunet(tmp_path, capsys):
    proc = in_process(effnet_main.main, [tmp_path, "--arch", "gpunet-0", "--dry-run"], capsys)
    assert_one_line_error(proc, "gpunet-0", "gpunet/main.py")


def test_gpunet_main_script_error_is_one_line(tmp_path):
    assert_one_line_error(run_script("gpunet/main.py", tmp_path, "--arch", "efficientnet-b4", "--dry-run"),
                          "efficientnet/main.py")
