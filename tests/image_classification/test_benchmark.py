"""The benchmark entry point on the CPU: modes that need no GPU, a peer in the same run, the JSON and the table."""
import json

import pytest

from tests.conftest import assert_one_line_error, run_script


def test_benchmark_cpu_modes_and_peer(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_script("-m", "image_classification.benchmark", "--model", "efficientnet-b0", "-b", "2",
                      "--image-size", "32", "--modes", "eager", "folded", "onnxruntime", "graph",
                      "--peers", "timm", "--peer-modes", "eager", "--iters", "3", "--warmup", "1", "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped ours efficientnet-b0 graph batch 2: mode graph needs a GPU" in proc.stderr
    doc = json.loads(out.read_text())
    assert doc["meta"]["device"] == "cpu" and doc["meta"]["torch"]
    rows = {(r["source"], r["mode"]): r for r in doc["results"]}
    assert set(rows) == {("ours", "eager"), ("ours", "folded"), ("ours", "onnxruntime"), ("timm", "eager")}
    for r in rows.values():
        assert r["batch_size"] == 2 and r["image_size"] == 32 and r["precision"] == "fp32"
        assert 0 < r["median_ms"] <= r["p90_ms"] and r["images_per_s"] == pytest.approx(2e3 / r["median_ms"], 0.01)
    assert rows[("timm", "eager")]["model"] == "efficientnet_b0"
    assert "CPUExecutionProvider" in rows[("ours", "onnxruntime")]["note"]
    table = proc.stdout.split("\n\n")[-1]
    assert "median ms" in table and table.count("efficientnet") == 4


def test_benchmark_bad_requests_are_one_line(tmp_path):
    assert_one_line_error(run_script("-m", "image_classification.benchmark", "--model", "resnet-9", "--cpu"),
                          "resnet-9")
    assert_one_line_error(run_script("-m", "image_classification.benchmark", "--cpu", "--precision", "fp16"),
                          "fp16")


@pytest.mark.parametrize("argv, words", [(["-b", "0"], "-b: must be at least 1, got 0"),
                                         (["--iters", "0"], "--iters: must be at least 1"),
                                         (["--image-size", "0"], "--image-size: must be at least 1")])
def test_benchmark_refuses_empty_batches(argv, words):
    assert_one_line_error(run_script("-m", "image_classification.benchmark", "--cpu", *argv), words)
