"""What a user relies on from a training run: files, report, summary, accumulation, early stopping, evaluation."""
import json
import os
import stat

import pytest

from common.cli_errors import UserError
from common.dllogger import read_report

from .helpers import load, max_weight_diff, run


@pytest.mark.parametrize("keep, expected", [(0, []), (2, [2, 3]), (-1, [1, 2, 3])])
def test_gather_checkpoints_keeps_what_its_help_says(digits_root, tmp_path, keep, expected):
    run(digits_root, tmp_path, "--epochs", 3, "-j", 0, "--gather-checkpoints", keep)
    numbered = sorted(int(p.name[11:15]) for p in tmp_path.glob("checkpoint_*.pth.tar"))
    assert numbered == expected
    assert (tmp_path / "checkpoint.pth.tar").is_file()
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporaries
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "checkpoint.pth.tar").stat().st_mode)
    assert mode == 0o666 & ~umask  # the permissions of any file the user writes, not mkstemp's 0600


def test_checkpoint_holds_everything_needed_to_resume_and_to_serve(digits_root, tmp_path):
    run(digits_root, tmp_path, "--epochs", 1, "-j", 0, "--use-ema", 0.9)
    ckpt = load(tmp_path / "checkpoint.pth.tar")
    for key in ("epoch", "best_prec1", "state_dict", "state_dict_ema", "optimizer", "rng", "arch", "num_classes",
                "class_names", "model_cfg", "config", "global_step", "format"):
        assert key in ckpt, key
    assert ckpt["arch"] == "efficientnet-b0" and ckpt["num_classes"] == 10
    assert ckpt["class_names"] == [str(i) for i in range(10)]
    assert ckpt["model_cfg"]["input_size"] == (3, 32, 32) or list(ckpt["model_cfg"]["input_size"]) == [3, 32, 32]
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])


def test_report_and_summary_use_upstream_metric_names(digits_root, tmp_path):
    summary = run(digits_root, tmp_path, "--epochs", 2, "-j", 0, "--use-ema", 0.9, "--raport-file", "raport.json")
    lines = (tmp_path / "raport.json").read_text().splitlines()
    assert lines and all(line.startswith("DLLL {") for line in lines)
    records = read_report(tmp_path / "raport.json")
    metrics = {r["metric"] for r in records if r["type"] == "METADATA"}
    for name in ("train.loss", "train.total_ips", "train.compute_ips", "train.data_time", "train.lr",
                 "val.top1", "val.top5", "val.loss", "val.compute_latency", "val.compute_latency_at95",
                 "val.compute_latency_at99", "val.total_ips", "val.compute_ips", "val_ema.top1", "val_ema.loss"):
        assert name in metrics, name
    epochs = [r for r in records if r["type"] == "LOG" and isinstance(r["step"], list) and len(r["step"]) == 1]
    assert [r["step"][0] for r in epochs] == [0, 1]
    assert {"train.loss", "val.top1", "val.top5", "val_ema.top1"} <= set(epochs[-1]["data"])
    final = [r for r in records if r["type"] == "LOG" and r["step"] == []]
    assert final and "val.top1" in final[-1]["data"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["best_top1"] == summary["best_top1"] and on_disk["arch"] == "efficientnet-b0"
    assert on_disk["metrics"]["val.top1"] == max(r["data"]["val.top1"] for r in epochs)


def test_gradient_accumulation_steps_the_optimizer_less_often(digits_root, tmp_path):
    run(digits_root, tmp_path / "acc", "--epochs", 1, "-j", 0, "--optimizer-batch-size", 32)
    run(digits_root, tmp_path / "plain", "--epochs", 1, "-j", 0)
    acc, plain = load(tmp_path / "acc" / "checkpoint.pth.tar"), load(tmp_path / "plain" / "checkpoint.pth.tar")
    assert (acc["global_step"], acc["optimizer_steps"]) == (4, 2)
    assert (plain["global_step"], plain["optimizer_steps"]) == (4, 4)
    with pytest.raises(UserError, match="not a multiple"):
        run(digits_root, tmp_path / "bad", "--epochs", 1, "-j", 0, "--optimizer-batch-size", 24)


def test_early_stopping_stops_when_top1_stalls(digits_root, tmp_path):
    summary = run(digits_root, tmp_path, "--epochs", 5, "-j", 0, "--lr", 0, "--early-stopping-patience", 1)
    assert "early_stopped" in summary and summary["epochs_done"] == 2


def test_run_epochs_runs_part_of_the_schedule(digits_root, tmp_path):
    summary = run(digits_root, tmp_path, "--epochs", 5, "--run-epochs", 2, "-j", 0)
    assert summary["epochs_done"] == 2 and load(tmp_path / "checkpoint.pth.tar")["epoch"] == 2


def test_evaluate_mode_reproduces_the_training_validation(digits_root, tmp_path):
    trained = run(digits_root, tmp_path / "train", "--epochs", 1, "-j", 0)
    best = tmp_path / "train" / "checkpoint.pth.tar"
    evaluated = run(digits_root, tmp_path / "eval", "--evaluate", "-j", 2, "--pretrained-from-file", best)
    assert evaluated["val"]["top1"] == pytest.approx(trained["val"]["top1"])
    assert evaluated["val"]["loss"] == pytest.approx(trained["val"]["loss"], rel=1e-5)
    assert not list((tmp_path / "eval").glob("*.pth.tar"))


def test_pretrained_with_other_class_count_needs_fresh_classifier(digits_root, tmp_path):
    import torch

    from image_classification.models import create_model

    weights = tmp_path / "imagenet.pth"
    torch.save(create_model("efficientnet-b0").state_dict(), weights)
    with pytest.raises(UserError, match="1000 classes but the model has 10"):
        run(digits_root, tmp_path / "a", "--epochs", 1, "-j", 0, "--pretrained-from-file", weights)
    run(digits_root, tmp_path / "b", "--epochs", 1, "-j", 0, "--pretrained-from-file", weights, "--fresh-classifier")


def test_fine_tuning_starts_from_the_given_weights(digits_root, tmp_path):
    run(digits_root, tmp_path / "a", "--epochs", 1, "-j", 0)
    start = load(tmp_path / "a" / "checkpoint.pth.tar")["state_dict"]
    run(digits_root, tmp_path / "b", "--epochs", 1, "-j", 0, "--lr", 0, "--momentum", 0,
        "--pretrained-from-file", tmp_path / "a" / "checkpoint.pth.tar")
    after = load(tmp_path / "b" / "checkpoint.pth.tar")["state_dict"]
    weights = {k: v for k, v in start.items() if "running" not in k and "num_batches" not in k}
    assert max_weight_diff(weights, {k: after[k] for k in weights}) == 0.0  # lr 0: nothing but BN stats moves


@pytest.mark.slow
def test_efficientnet_b0_learns_the_digits(trained_digits):
    summary, workspace = trained_digits
    assert summary["best_top1"] >= 85.0, summary["best_top1"]
    assert (workspace / "model_best.pth.tar").is_file()
