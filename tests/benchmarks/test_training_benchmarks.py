"""The committed training benchmarks still run: benchmarks/train_speed.py (in its CPU smoke mode, every kind of row),
benchmarks/ddp_scaling.py (1 and 2 gloo processes) and benchmarks/make_jpegs.py (the ImageNet-shaped JPEG folder the
end-to-end rows read)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def script(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_make_jpegs_writes_an_imagefolder_of_imagenet_shaped_jpegs(tmp_path):
    out = script("benchmarks/make_jpegs.py", tmp_path / "jpegs", "--train", 12, "--val", 4, "--classes", 4, "-j", 2)
    assert out.returncode == 0, out.stderr
    train = sorted((tmp_path / "jpegs" / "train").glob("*/*.JPEG"))
    val = sorted((tmp_path / "jpegs" / "val").glob("*/*.JPEG"))
    assert len(train) == 12 and len(val) == 4
    assert len({p.parent.name for p in train}) == 4
    for path in train[:3]:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and min(im.size) >= 300
    again = script("benchmarks/make_jpegs.py", tmp_path / "again", "--train", 12, "--val", 4, "--classes", 4)
    assert again.returncode == 0
    assert train[0].read_bytes() == (tmp_path / "again" / train[0].relative_to(tmp_path / "jpegs")).read_bytes()


def test_train_speed_smoke_run_fills_every_row(tmp_path):
    script("benchmarks/make_jpegs.py", tmp_path / "jpegs", "--train", 40, "--val", 4, "--classes", 4, "-j", 2)
    result = tmp_path / "speed.json"
    out = script("benchmarks/train_speed.py", "--cpu", "--b0-batch", 4, "--gpunet-batch", 2, "--b0-size", 64,
                 "--gpunet-size", 64, "--steps", 2, "--warmup", 1, "--trainer-steps", 4, "--print-freq", 1,
                 "--profile", "--only", "timm-b0-eager", "plain-b0-eager", "ours-b0-eager", "ours-gpunet0-eager", "e2e",
                 "--jpeg-data", tmp_path / "jpegs", "--e2e-backends", "pytorch", "--e2e-mode", "eager",
                 "--e2e-steps", 4, "--e2e-prefetch", 3, "-j", 0, "--compile-option", "realize_reads_threshold=4",
                 "--stream-priority", "normal", "--json", result)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    results = json.loads(result.read_text())
    assert results["trainer_compile_options"] == ["realize_reads_threshold=4"]
    assert results["stream_priority"] == "normal"
    rows = results["rows"]
    assert list(rows) == ["timm-b0-eager", "plain-b0-eager", "ours-b0-eager", "ours-gpunet0-eager",
                          "e2e-b0-synthetic", "e2e-b0-pytorch"]
    assert all(row["img_s"] > 0 for row in rows.values())
    assert rows["ours-b0-eager"]["windows"] == 4  # --prof 4 steps, one window per step
    assert rows["timm-b0-eager"]["profile"]["kernels_per_step"] > 0


def test_train_speed_refuses_an_unknown_row():
    out = script("benchmarks/train_speed.py", "--cpu", "--only", "ours-b9")
    assert out.returncode != 0 and "no row matches --only ours-b9" in out.stderr


def test_ddp_scaling_smoke_run_measures_one_and_two_processes(tmp_path):
    out = script("benchmarks/ddp_scaling.py", "--cpu", "--mode", "eager", "--gpus", 2, 1, "--only", "b0",
                 "--b0-batch", 4, "--b0-size", 32, "--steps", 4, "--print-freq", 1,
                 "--json", tmp_path / "s.json", "--markdown", tmp_path / "s.md")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    results = json.loads((tmp_path / "s.json").read_text())
    assert results["gpus"] == [1, 2] and list(results["rows"]) == ["b0-1", "b0-2"]
    one, two = results["rows"]["b0-1"], results["rows"]["b0-2"]
    assert one["efficiency"] == 1.0 and one["windows"] == two["windows"] == 4
    # (a row without "error" means the run's summary.json reported the world size asked for)
    assert "error" not in two
    assert two["per_gpu_img_s"] == round(two["img_s"] / 2, 1)
    assert two["efficiency"] == round(two["img_s"] / (2 * one["img_s"]), 3)
    table = (tmp_path / "s.md").read_text()
    assert "| EfficientNet-B0 | 2 | 4 |" in table and "scaling efficiency" in table


def test_ddp_scaling_needs_the_one_gpu_baseline():
    out = script("benchmarks/ddp_scaling.py", "--cpu", "--mode", "eager", "--gpus", 2)
    assert out.returncode != 0 and "--gpus must include 1" in out.stderr


def test_tuned_rows_get_fused_sgd_and_the_trainers_compile_settings(monkeypatch):
    """The tuned peers' settings, checked with a spy in place of torch.compile (compiling a training step takes
    minutes on the CPU): fused SGD, mode reduce-overhead on CUDA (default on the CPU, with a note), and the trainer's
    realize_reads_threshold=8."""
    import torch
    import torch.nn as nn

    from benchmarks import train_speed
    from image_classification.runtime import compile_options

    assert train_speed.tuned_settings(torch.device("cuda")) == (
        {"fused": True}, "reduce-overhead", {"realize_reads_threshold": 8}, "")
    compiled, optimizers = [], []
    monkeypatch.setattr(compile_options, "compile_with_options",
                        lambda model, mode, options: compiled.append((mode, options)) or model)
    sgd = torch.optim.SGD
    monkeypatch.setattr(torch.optim, "SGD", lambda *a, **kw: optimizers.append(kw) or sgd(*a, **kw))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1000))
    out = train_speed.plain_loop(model, batch=2, size=8, steps=1, warmup=1, compile=True, tuned=True,
                                 device=torch.device("cpu"))
    assert compiled == [("default", {"realize_reads_threshold": 8})]
    assert optimizers[0]["fused"] is True
    assert out["tuned"] == {"optimizer": {"fused": True}, "compile_mode": "default",
                            "inductor": {"realize_reads_threshold": 8}}
    assert out["note"] == "CPU: compiled in mode default (reduce-overhead's CUDA graphs need CUDA)"
    assert out["img_s"] > 0


def test_the_tuned_rows_are_timm_b0_and_plain_gpunet0_at_their_batch_sizes(monkeypatch):
    from types import SimpleNamespace

    import torch

    from benchmarks import train_speed

    calls = {}
    monkeypatch.setattr(train_speed, "plain_loop", lambda model, **kw: calls.setdefault(
        f"{type(model).__module__.split('.')[0]} {type(model).__name__}", kw))
    args = SimpleNamespace(b0_batch=256, b0_size=224, gpunet_batch=192, gpunet_size=320, print_freq=10,
                           compile_option=[], stream_priority="high", steps=30, warmup=10, profile=False,
                           jpeg_data=None)
    table = train_speed.rows(args, torch.device("cpu"))
    table["timm-b0-tuned"]()
    table["plain-gpunet0-tuned"]()
    timm_b0, gpunet0 = calls["timm EfficientNet"], calls["image_classification GPUNet"]
    assert timm_b0["tuned"] and (timm_b0["batch"], timm_b0["size"]) == (256, 224)
    assert gpunet0["tuned"] and (gpunet0["batch"], gpunet0["size"]) == (192, 320)


def test_the_e2e_rows_give_the_jpeg_folder_to_the_backends_that_read_one(monkeypatch):
    """Which e2e row gets --jpeg-data is the registry's reads_folder, not a backend's name."""
    from types import SimpleNamespace

    import torch

    from benchmarks import train_speed
    from image_classification.data.choices import BACKENDS, Builder

    monkeypatch.setitem(BACKENDS, "made-up", Builder(".synthetic", "build_synthetic_data", reads_folder=False))
    monkeypatch.setattr(train_speed, "trainer_run", lambda family, arch, **kw: (kw["backend"], kw["data"]))
    args = SimpleNamespace(b0_batch=4, b0_size=64, gpunet_batch=2, gpunet_size=64, print_freq=1, compile_option=[],
                           stream_priority="normal", steps=1, warmup=1, profile=False, jpeg_data="/jpegs",
                           e2e_backends=["pytorch", "made-up"], e2e_steps=4, e2e_mode="eager",
                           e2e_augmentation=None, e2e_prefetch=None, workers=0)
    table = train_speed.rows(args, torch.device("cpu"))
    assert [table[name]() for name in table if name.startswith("e2e")] == [
        ("synthetic", None), ("pytorch", "/jpegs"), ("made-up", None)]
