"""The data-loader benchmark times every backend through build_data, lists unavailable ones as skipped with their
reason, and fails in one line on bad input."""
import json

from tests.conftest import assert_one_line_error, run_in_process, run_script

BENCH = ("-m", "image_classification.data.bench")


def test_bench_times_backends_and_skips_the_unavailable(digits_root, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_script(*BENCH, digits_root, "--backends", "pytorch", "pytorch-gpu", "synthetic", "dali-gpu", "--cpu",
                      "-b", 16, "--image-size", 32, "-j", 0, "--batches", 3, "--warmup", 1, "--json", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("backend "):].splitlines()
    assert table[0].split() == ["backend", "device", "workers", "images/s", "ms/batch", "status"]
    lines = {line.split()[0]: line for line in table[2:]}
    assert set(lines) == {"pytorch", "pytorch-gpu", "synthetic", "dali-gpu"}
    assert lines["dali-gpu"].split()[-1] != "ok" and "skipped: dali-gpu needs a CUDA device" in lines["dali-gpu"]

    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["host_cpus"] >= 1 and report["torch"] and report["date"]
    rows = {r["backend"]: r for r in report["rows"]}
    assert [r["backend"] for r in report["rows"]] == ["pytorch", "pytorch-gpu", "synthetic", "dali-gpu"]
    for name in ("pytorch", "pytorch-gpu", "synthetic"):
        row = rows[name]
        assert row["status"] == "ok" and row["device"] == "cpu" and row["batches"] == 3 and row["images"] == 48
        assert row["images_per_s"] > 0 and row["ms_per_batch"] > 0
        assert f"{row['images_per_s']:.1f}" in lines[name]
    assert rows["pytorch"]["workers"] == 0 and rows["synthetic"]["workers"] is None
    assert rows["dali-gpu"]["status"] == "skipped" and "CUDA" in rows["dali-gpu"]["reason"]
    assert rows["dali-gpu"]["images_per_s"] is None


def test_bench_val_split_wraps_around_the_epoch(digits_root):
    # 359 val images at batch 128: 3 batches an epoch (the last partial), so 5 batches start a second pass.
    proc = run_script(*BENCH, digits_root, "--backends", "pytorch-gpu", "--split", "val", "--cpu", "-b", 128,
                      "--image-size", 32, "-j", 0, "--batches", 5, "--warmup", 0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].split()[:3] == ["pytorch-gpu", "cpu", "0"]


def _in_process(capsys, *argv):
    from image_classification.data.bench import main

    return run_in_process(capsys, main, *argv)


def test_bench_bad_input_fails_in_one_line(tmp_path, digits_root, capsys):
    assert_one_line_error(run_script(*BENCH, tmp_path / "nope", "--backends", "pytorch"), "does not exist")
    assert_one_line_error(_in_process(capsys, digits_root, "--backends", "pytorch", "mxnet"), "invalid choice")
    assert_one_line_error(_in_process(capsys, digits_root, "-b", 0), "must be at least 1")
    assert_one_line_error(_in_process(capsys, digits_root, "--batches", "x"), "whole number")
    assert_one_line_error(_in_process(capsys, digits_root, "-j", -1), "must not be negative")
