"""Training throughput on synthetic data, this project's trainer beside plain eager AMP loops, in one process.

    PYTHONPATH=. python benchmarks/train_speed.py --json OUT.json             # the issue #5 comparison on one GPU
    PYTHONPATH=. python benchmarks/train_speed.py --only ours-b0-compile      # one row

Rows (fp16 AMP, channels_last, SGD with momentum, label smoothing 0.1):
- `timm-b0-eager` / `timm-b0-compile`: timm's efficientnet_b0 in a plain training loop, batch 256 at 224 px.
- `plain-gpunet0-eager`: this project's GPUNet-0 in the same plain loop, batch 192 at 320 px (the reference the
  GPUNet target is measured against: "the same network trained by a plain eager AMP loop").
- `ours-*`: the real trainer (efficientnet/main.py and gpunet/main.py's configuration through
  image_classification.training.Trainer: EMA off, --prof steps, metrics every --print-freq), eager and --compile.
Images/s of the trainer rows are the median of its print windows after the first two (compilation, warm-up);
the plain loops time `--steps` steps after `--warmup` with CUDA synchronisation. Peak GPU memory per row.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn


def plain_loop(model: nn.Module, *, batch: int, size: int, steps: int, warmup: int, compile: bool) -> dict:
    device = torch.device("cuda")
    model = model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-5)
    scaler = torch.amp.GradScaler("cuda")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    step_model = torch.compile(model) if compile else model
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn(step_model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return {"img_s": round(batch * steps / elapsed, 1), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "setup_s": round(setup, 1)}


def trainer_run(family: str, arch: str, *, batch: int, size: int, steps: int, extra: list[str]) -> dict:
    if family == "efficientnet":
        from efficientnet.main import build_parser, config_from_args
    else:
        from gpunet.main import build_parser, config_from_args
    from common.dllogger import read_report
    from image_classification.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--data-backend", "synthetic", "--arch", arch, "-b", str(batch), "--image-size", str(size),
                "--amp", "--memory-format", "nhwc", "--epochs", "1", "--prof", str(steps), "--training-only",
                "--no-checkpoints", "--print-freq", "10", "--no-progress", "--num_classes", "1000",
                "--label-smoothing", "0.1", "--workspace", tmp, *extra]
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        train(config_from_args(build_parser().parse_args(argv)))
        wall = time.perf_counter() - t0
        windows = [r["data"]["train.total_ips"] for r in read_report(Path(tmp) / "experiment_raport.json")
                   if r.get("type") == "LOG" and len(r.get("step") or []) == 2 and "train.total_ips" in r["data"]]
    steady = windows[2:] or windows
    return {"img_s": round(statistics.median(steady), 1), "windows": len(windows),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "wall_s": round(wall, 1)}


def rows(args):
    import timm

    from image_classification.models import create_model

    b0 = dict(batch=args.b0_batch, size=224)
    g0 = dict(batch=args.gpunet_batch, size=320)
    return {
        "timm-b0-eager": lambda: plain_loop(timm.create_model("efficientnet_b0"), **b0, steps=args.steps,
                                            warmup=args.warmup, compile=False),
        "timm-b0-compile": lambda: plain_loop(timm.create_model("efficientnet_b0"), **b0, steps=args.steps,
                                              warmup=args.warmup, compile=True),
        "ours-b0-eager": lambda: trainer_run("efficientnet", "efficientnet-b0", **b0, steps=args.trainer_steps,
                                             extra=[]),
        "ours-b0-compile": lambda: trainer_run("efficientnet", "efficientnet-b0", **b0, steps=args.trainer_steps,
                                               extra=["--compile"]),
        "ours-b0-compile-graphs": lambda: trainer_run("efficientnet", "efficientnet-b0", **b0,
                                                      steps=args.trainer_steps,
                                                      extra=["--compile", "--compile-mode", "reduce-overhead"]),
        "plain-gpunet0-eager": lambda: plain_loop(create_model("gpunet-0"), **g0, steps=args.steps,
                                                  warmup=args.warmup, compile=False),
        "ours-gpunet0-eager": lambda: trainer_run("gpunet", "gpunet-0", **g0, steps=args.trainer_steps, extra=[]),
        "ours-gpunet0-compile": lambda: trainer_run("gpunet", "gpunet-0", **g0, steps=args.trainer_steps,
                                                    extra=["--compile"]),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", default=None, help="row names (default: all)")
    p.add_argument("--b0-batch", type=int, default=256)
    p.add_argument("--gpunet-batch", type=int, default=192)
    p.add_argument("--steps", type=int, default=30, help="timed steps of the plain loops")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--trainer-steps", type=int, default=60, help="--prof of the trainer rows")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: this benchmark needs a CUDA device")
    torch.backends.cudnn.benchmark = True
    table = rows(args)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv, "rows": {}}
    for name in args.only or list(table):
        try:
            results["rows"][name] = table[name]()
        except Exception as exc:  # one failing row is a result too; keep measuring the others
            results["rows"][name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        print(f"{name:24s} {json.dumps(results['rows'][name])}", flush=True)
        torch.cuda.empty_cache()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
