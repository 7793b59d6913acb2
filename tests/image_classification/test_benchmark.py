"""The benchmark entry point on the CPU: modes that need no GPU (the others skipped with their reason), peers in the
same run, the memory floor of each row, the ratio against tuned peers, the JSON and the table."""
import json

import pytest

from tests.conftest import assert_one_line_error, run_in_process, run_script


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


def test_benchmark_gpu_modes_are_skipped_on_the_cpu_and_rows_carry_the_memory_floor(tmp_path):
    from image_classification.inference.roofline import layer_traffic
    from image_classification.models import create_model

    out = tmp_path / "bench.json"
    proc = run_script("-m", "image_classification.benchmark", "--cpu", "--model", "gpunet-0", "-b", "2",
                      "--image-size", "32",
                      "--modes", "eager", "fast", "fast-frozen", "fast-frozen-mm", "--peers", "plain", "timm",
                      "--peer-modes", "eager", "tuned", "--iters", "2", "--warmup", "0",
                      "--copy-bandwidth-gbs", "20", "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in ("ours gpunet-0 fast batch 2: mode fast needs a GPU",
                 "ours gpunet-0 fast-frozen batch 2: mode fast-frozen needs a GPU",
                 "ours gpunet-0 fast-frozen-mm batch 2: mode fast-frozen-mm needs a GPU",
                 "plain gpunet-0 tuned batch 2: mode tuned needs a GPU"):
        assert f"skipped {line}\n" in proc.stderr
    doc = json.loads(out.read_text())
    assert doc["meta"]["copy_bandwidth_gbs"] == 20 and doc["meta"]["copy_bandwidth"] == "given"
    # timm has no GPUNet: only this project's model and its plain (unfolded) self are timed.
    rows = {(r["source"], r["model"], r["mode"]): r for r in doc["results"]}
    assert set(rows) == {("ours", "gpunet-0", "eager"), ("plain", "gpunet-0", "eager")}
    expected = layer_traffic(create_model("gpunet-0"), 32).bytes_per_image("fp32", 2)
    for r in rows.values():
        assert r["bytes_per_image"] == round(expected)
        assert r["floor_images_per_s"] == pytest.approx(20e9 / r["bytes_per_image"], rel=1e-3)
        assert r["floor_fraction"] == pytest.approx(r["images_per_s"] / r["floor_images_per_s"], rel=1e-3)
    assert doc["ratios"] == []  # no fast row and no tuned peer ran: nothing to compare
    table = proc.stdout.split("\n\n")[-1]
    assert table.count(f"{expected / 1e6:.3g} MB/img: floor ") == 2 and "at 20 GB/s; measured " in table
    assert "ratio:" not in proc.stdout


def test_without_a_bandwidth_the_cpu_rows_have_bytes_but_no_floor(tmp_path, capsys):
    from image_classification.benchmark import main

    out = tmp_path / "bench.json"
    proc = run_in_process(capsys, main, "--cpu", "--model", "efficientnet-b0", "-b", "1", "--image-size", "32",
                          "--modes", "eager", "--iters", "1", "--warmup", "0", "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["bytes_per_image"] > 0 and row["floor_images_per_s"] is None and row["floor_fraction"] is None
    assert "floor" not in proc.stdout and "copy bandwidth" not in proc.stdout


def test_a_bandwidth_must_be_a_positive_number(capsys):
    from image_classification.benchmark import main

    assert_one_line_error(run_in_process(capsys, main, "--cpu", "--copy-bandwidth-gbs", "0"),
                          "--copy-bandwidth-gbs: must be a positive number, got 0")


def _row(source, model, mode, batch, ms):
    from image_classification.benchmark import Timing

    return Timing(source, model, mode, batch, 224, "fp16", ms, ms, round(batch / ms * 1e3, 1), None, 1.0)


def test_ratio_compares_each_fast_mode_with_the_best_tuned_peer_of_the_same_network_and_batch():
    from image_classification.benchmark import format_ratios, peer_ratios

    rows = [_row("ours", "efficientnet-b0", "fast", 256, 6.0),
            _row("ours", "efficientnet-b0", "fast-frozen", 256, 5.5),
            _row("ours", "efficientnet-b0", "graph", 256, 12.0),  # not a fast mode: not compared
            _row("timm", "efficientnet_b0", "tuned", 256, 5.8),
            _row("plain", "efficientnet-b0", "tuned", 256, 6.6),
            _row("timm", "efficientnet_b0", "compile-graph", 256, 5.0),  # not tuned: not a comparison
            _row("ours", "efficientnet-b0", "fast", 1, 0.40),  # no tuned peer at batch 1
            _row("ours", "gpunet-0", "fast", 256, 8.0),
            _row("plain", "gpunet-0", "tuned", 256, 8.4)]
    ratios = peer_ratios(rows, ["efficientnet-b0", "gpunet-0"])
    assert [(q["model"], q["batch_size"], q["ours_mode"], q["peer"], q["ratio"]) for q in ratios] == [
        ("efficientnet-b0", 256, "fast", "timm efficientnet_b0", round(5.8 / 6.0, 3)),
        ("efficientnet-b0", 256, "fast-frozen", "timm efficientnet_b0", round(5.8 / 5.5, 3)),
        ("gpunet-0", 256, "fast", "plain gpunet-0", round(8.4 / 8.0, 3)),
    ]
    text = format_ratios(ratios).splitlines()
    assert text[0].startswith("ratio: ours / the best tuned peer") and len(text) == 4
    assert "fast-frozen" in text[2] and text[2].endswith("1.05x") and "(5.500 ms)" in text[2]


def test_tuned_peers_get_freezing_and_the_fast_paths_options_at_each_batch_size():
    from image_classification.benchmark import tuned_compile_options
    from image_classification.runtime.compile_options import SMALL_BATCH

    assert tuned_compile_options(1) == {"freezing": True, "conv_1x1_as_mm": True}
    assert tuned_compile_options(SMALL_BATCH + 1) == {"freezing": True}


@pytest.mark.parametrize("mode, options", [("fast-frozen", {"freezing": True}),
                                           ("fast-frozen-mm", {"freezing": True, "conv_1x1_as_mm": True})])
def test_fast_frozen_modes_are_the_fast_path_with_freezing_at_any_batch(monkeypatch, tmp_path, mode, options):
    import torch

    from image_classification import benchmark
    from image_classification.inference import fast

    calls = []
    monkeypatch.setattr(fast, "prepare_for_inference", lambda model, **kw: calls.append(kw) or "predictor")
    example = torch.zeros(256, 3, 8, 8)
    assert benchmark.build_runner(torch.nn.Conv2d(3, 3, 1), mode, device=torch.device("cuda"), precision="fp16",
                                  example=example, compile_mode="default", workdir=tmp_path) == "predictor"
    assert calls == [dict(device=torch.device("cuda"), precision="fp16", channels_last=True, fold_bn=True,
                          compile="default", compile_options=options, cuda_graph=True, batch_size=256,
                          image_size=8)]


def test_every_configuration_gets_its_own_recompile_budget():
    """Dynamo allows 8 compilations per code object; one process measures more configurations than that of one
    network, so without a fresh start the later rows would silently time eager code."""
    import torch

    from image_classification.benchmark import measure

    compiled = []

    def backend(graph, example_inputs):
        compiled.append(graph)
        return graph.forward

    model = torch.nn.Conv2d(3, 4, 3)

    def make_runner(x):
        return torch.compile(model, backend=backend, dynamic=False)

    for batch in range(1, 11):
        measure("ours", "conv", "compile", make_runner, batch_size=batch, image_size=8, precision="fp32",
                device=torch.device("cpu"), warmup=0, iters=1)
    assert len(compiled) == 10  # one compilation per configuration, none left to run eager
