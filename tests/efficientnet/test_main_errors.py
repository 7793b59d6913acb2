"""main.py's bad-input contract: one `error:` line, exit 2, and nothing written."""
import json

import pytest

from efficientnet import launch, main
from gpunet import main as gpunet_main
from tests.conftest import assert_one_line_error, run_in_process, run_script


def test_missing_data_folder_writes_nothing(tmp_path):
    proc = run_script("efficientnet/main.py", tmp_path / "missing", "--workspace", tmp_path / "ws")
    assert_one_line_error(proc, "does not exist")
    assert not (tmp_path / "ws").exists()


def test_unknown_arch_suggests_names(tmp_path):
    proc = run_script("efficientnet/main.py", tmp_path, "--arch", "efficientnet-b9")
    assert_one_line_error(proc, "unknown model 'efficientnet-b9'", "efficientnet-b7")


def test_affinity_without_nvml_is_explained(digits_root, tmp_path):
    proc = run_script("efficientnet/main.py", digits_root, "--workspace", tmp_path, "--gpu-affinity", "socket")
    assert_one_line_error(proc, "NVML")


def test_corrupt_image_stops_training_with_one_line(digits_root, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(digits_root, data)
    (data / "train" / "4" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    proc = run_script("efficientnet/main.py", data, "--workspace", tmp_path / "ws", "--image-size", 32, "-b", 64,
                      "-j", 0, "--epochs", 1, "--no-progress", "--cpu")
    assert_one_line_error(proc, "1 of 1439 images", "broken.jpg", "--skip-bad-images")


def test_compile_option_without_a_value_is_refused(tmp_path):
    proc = run_script("efficientnet/main.py", tmp_path, "--compile-option", "realize_reads_threshold")
    assert_one_line_error(proc, "--compile-option", "expected KEY=VALUE")


def test_unknown_compile_option_is_refused_before_anything_is_written(digits_root, tmp_path):
    proc = run_script("efficientnet/main.py", digits_root, "--workspace", tmp_path / "ws", "--compile",
                      "--compile-option", "realise_reads_threshold=8", "--cpu")
    assert_one_line_error(proc, "unknown TorchInductor option", "realise_reads_threshold")
    assert not (tmp_path / "ws").exists()


def test_workspace_under_a_file_is_one_line_naming_the_path(digits_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_script("efficientnet/main.py", digits_root, "--workspace", blocker / "ws", "--image-size", 32,
                      "-b", 64, "-j", 0, "--epochs", 1, "--no-progress", "--cpu")
    assert_one_line_error(proc, f"{blocker / 'ws'}: Not a directory")


def test_debug_variable_shows_the_traceback(digits_root, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("IMAGE_CLASSIFICATION_DEBUG", "1")
    proc = run_script("efficientnet/main.py", digits_root, "--workspace", blocker / "ws", "--image-size", 32,
                      "-b", 64, "-j", 0, "--epochs", 1, "--no-progress", "--cpu")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "NotADirectoryError" in proc.stderr


@pytest.mark.parametrize("argv, words", [
    (["--momentum", "-1"], "--momentum must be in [0, 1), got -1.0"),
    (["--momentum", "1"], "--momentum must be in [0, 1)"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--survival_prob", "0"], "--survival_prob must be in (0, 1], got 0.0"),
    (["--bn_momentum", "1.5"], "--bn_momentum must be in [0, 1], got 1.5"),
    (["--cutmix", "inf"], "--cutmix takes an alpha >= 0 (0: off), got inf"),
    (["--mixup", "nan"], "--mixup takes an alpha >= 0 (0: off), got nan"),
    (["--weight-decay", "-0.001"], "--weight-decay must be a finite number >= 0, got -0.001"),
    (["--crop-pct", "0"], "--crop-pct is the fraction of the resized image kept, in (0, 1], got 0.0"),
    (["--run-epochs", "0"], "--run-epochs takes -1 (the whole schedule) or at least 1 epoch, got 0"),
    (["--lr", "inf"], "--lr must be a finite number >= 0, got inf"),
    (["--lr", "nan"], "--lr must be a finite number >= 0, got nan"),
    (["--optimizer", "adamw", "--rmsprop-tf"], "--rmsprop-tf makes the optimizer rmsproptf, which conflicts with "
                                               "--optimizer adamw"),
])
def test_impossible_values_are_refused_at_parse_time(argv, words, tmp_path, capsys):
    assert_one_line_error(run_in_process(capsys, main.main, tmp_path, *argv, "--dry-run"), words)


@pytest.mark.parametrize("argv, optimizer", [([], "sgd"), (["--rmsprop-tf"], "rmsproptf"),
                                             (["--optimizer", "rmsprop", "--rmsprop-tf"], "rmsproptf"),
                                             (["--optimizer", "adamw"], "adamw")])
def test_rmsprop_tf_alone_or_with_rmsprop_still_works(argv, optimizer, tmp_path, capsys):
    proc = run_in_process(capsys, main.main, tmp_path, *argv, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["optimizer"] == optimizer


def test_evaluate_without_weights_is_refused_before_anything_is_written(digits_root, tmp_path, capsys):
    proc = run_in_process(capsys, main.main, digits_root, "--evaluate", "--workspace", tmp_path / "ws", "--cpu")
    assert_one_line_error(proc, "--evaluate needs the weights", "--pretrained-from-file", "--resume", "--pretrained")
    assert not (tmp_path / "ws").exists()
    proc = run_in_process(capsys, launch.main, "--model", "efficientnet-b0", "--precision", "FP32", "--platform",
                          "CPU", "--mode", "evaluate", digits_root, "--workspace", tmp_path / "ws")
    assert_one_line_error(proc, "--evaluate needs the weights")


QUICK_EVAL = ("--image-size", 32, "-b", 64, "--prof", 1, "-j", 0, "--no-progress")


def test_benchmark_inference_times_random_weights(digits_root, tmp_path, capsys):
    proc = run_in_process(capsys, launch.main, "--model", "efficientnet-b0", "--precision", "FP32", "--platform",
                          "CPU", "--mode", "benchmark_inference", digits_root, "--workspace", tmp_path, *QUICK_EVAL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["val"]["images"] == 64


def test_evaluate_on_synthetic_data_needs_no_weights(tmp_path, capsys):
    proc = run_in_process(capsys, main.main, "--evaluate", "--data-backend", "synthetic", "--num_classes", 10,
                          "--workspace", tmp_path, "--cpu", *QUICK_EVAL)
    assert proc.returncode == 0, proc.stderr


def test_a_symlink_loop_in_the_data_is_one_line(digits_root, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(digits_root, data)
    (data / "train" / "0" / "self").symlink_to(data / "train" / "0")
    proc = run_in_process(capsys, main.main, data, "--workspace", tmp_path / "ws", "--cpu", *QUICK_EVAL)
    assert_one_line_error(proc, f"{data / 'train' / '0' / 'self'} points to", "symbolic link loop")
    assert not (tmp_path / "ws").exists()


def test_an_empty_class_folder_is_one_line(digits_root, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(digits_root, data)
    (data / "val" / "7").rename(tmp_path / "moved")
    (data / "val" / "7").mkdir()
    proc = run_in_process(capsys, main.main, data, "--workspace", tmp_path / "ws", "--cpu", *QUICK_EVAL)
    assert_one_line_error(proc, f"class folder {data / 'val' / '7'} holds no images")


def test_an_image_size_no_memory_holds_is_refused(tmp_path, capsys):
    proc = run_in_process(capsys, main.main, tmp_path, "--image-size", 100000, "--dry-run")
    assert_one_line_error(proc, "--image-size 100000 cannot fit", "256 x 24 channels x 50000x50000 px x 4 bytes",
                          "lower --image-size or --batch-size")


@pytest.mark.parametrize("arch, size", [("efficientnet-b4", 380), ("efficientnet-b0", 800), ("gpunet-d2", 562)])
def test_large_but_real_image_sizes_are_accepted(arch, size, tmp_path, capsys):
    entry = gpunet_main if arch.startswith("gpunet") else main
    proc = run_in_process(capsys, entry.main, tmp_path, "--arch", arch, "--image-size", size, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["image_size"] == size
