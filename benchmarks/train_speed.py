"""Training throughput on synthetic data, this project's trainer beside plain eager AMP loops, in one process.

    PYTHONPATH=. python benchmarks/train_speed.py --json OUT.json             # the issue #5 comparison on one GPU
    PYTHONPATH=. python benchmarks/train_speed.py --only ours-b0-compile      # one row
    PYTHONPATH=. python benchmarks/train_speed.py --only ours-b0-compile-graphs timm-b0-tuned   # ours vs a tuned peer
    PYTHONPATH=. python benchmarks/train_speed.py --only e2e --jpeg-data /tmp/jpegs --e2e-backends pytorch dali-gpu
    PYTHONPATH=. python benchmarks/train_speed.py --cpu --b0-batch 4 --gpunet-batch 2 --b0-size 64 --gpunet-size 64 \
        --steps 2 --warmup 1 --trainer-steps 4          # a smoke run on the CPU (fp32; a compiled row takes minutes)

Rows (fp16 AMP, channels_last, SGD with momentum, label smoothing 0.1):
- `timm-b0-eager` / `timm-b0-compile`: timm's efficientnet_b0 in a plain training loop, batch 256 at 224 px.
- `timm-b0-tuned` / `plain-gpunet0-tuned`: the peer given this project's training tricks by hand: fused SGD,
  torch.compile(mode="reduce-overhead") (CUDA graphs) and the trainer's Inductor options (realize_reads_threshold=8).
  On the CPU, where reduce-overhead has no CUDA graphs to record, they compile in mode default and say so in `note`.
- `plain-b0-*`: this project's EfficientNet-B0 in the same plain loop (model speed apart from the trainer's).
- `plain-gpunet0-eager`: this project's GPUNet-0 in the same plain loop, batch 192 at 320 px (the reference the
  GPUNet target is measured against: "the same network trained by a plain eager AMP loop"); `-compile` compiled.
- `ours-*`: the real trainer (efficientnet/main.py and gpunet/main.py's configuration through
  image_classification.training.Trainer: EMA off, --prof steps, metrics every --print-freq), eager and --compile.
- `e2e-b0-<backend>` (with --jpeg-data): the trainer on a folder of JPEGs through each --e2e-backends loader, and
  `e2e-b0-synthetic`, the same configuration on synthetic data, for the "fraction of synthetic speed" figure.
Images/s of the trainer rows are the median of its print windows after the first two (compilation, warm-up);
the plain loops time `--steps` steps after `--warmup` with CUDA synchronisation. Peak GPU memory per row.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn


def _peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def profile_steps(step, device: torch.device, steps: int = 5) -> dict:
    """GPU time per step by kernel kind and the heaviest kernels, to see where a training step goes."""
    from torch.profiler import ProfilerActivity, profile

    from image_classification.benchmark import kernel_kind

    _sync(device)
    t0 = time.perf_counter()
    cuda = device.type == "cuda"  # on the CPU (smoke runs) the "kernels" are operators
    kind_of = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
        _sync(device)
    wall = (time.perf_counter() - t0) / steps * 1e3
    kinds: dict[str, list] = {}
    names: dict[str, float] = {}
    for evt in prof.events():
        if evt.device_type == kind_of:
            kind = kinds.setdefault(kernel_kind(evt.name), [0, 0.0])
            kind[0] += 1
            ms = (evt.device_time if cuda else evt.self_cpu_time_total) / 1e3
            kind[1] += ms
            names[evt.name[:90]] = names.get(evt.name[:90], 0.0) + ms
    busy = sum(t for _, t in kinds.values()) / steps
    top = sorted(names.items(), key=lambda kv: -kv[1])[:12]
    return {"wall_ms_per_step": round(wall, 2), "gpu_busy_ms_per_step": round(busy, 2),
            "kernels_per_step": sum(c for c, _ in kinds.values()) / steps,
            "by_kind_ms": {k: round(t / steps, 2) for k, (_, t) in kinds.items()},
            "top_kernels_ms": {n: round(t / steps, 3) for n, t in top}}


def tuned_settings(device: torch.device) -> tuple[dict, str, dict, str]:
    """(SGD kernel options, torch.compile mode, Inductor options, note) of a tuned plain loop on `device`: the tricks
    this project's trainer uses, applied by hand."""
    from image_classification.training.step import TRAINING_INDUCTOR_OPTIONS

    if device.type == "cuda":
        return {"fused": True}, "reduce-overhead", dict(TRAINING_INDUCTOR_OPTIONS), ""
    return ({"fused": True}, "default", dict(TRAINING_INDUCTOR_OPTIONS),
            "CPU: compiled in mode default (reduce-overhead's CUDA graphs need CUDA)")


def plain_loop(model: nn.Module, *, batch: int, size: int, steps: int, warmup: int, compile: bool,
               device: torch.device, profile: bool = False, tuned: bool = False) -> dict:
    """A plain AMP training loop; `tuned` compiles it with `tuned_settings` (and implies `compile`)."""
    cuda = device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last).train()
    kernels, mode, options, note = tuned_settings(device) if tuned else ({}, "default", {}, "")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-5, **kernels)
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    if tuned:
        from image_classification.runtime.compile_options import compile_with_options

        step_model = compile_with_options(model, mode, options)
    else:
        step_model = torch.compile(model) if compile else model
    graphs = tuned and mode == "reduce-overhead"
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step():
        if graphs:  # each step is a new iteration of the recorded graphs, whose outputs the last one may still hold
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            loss = loss_fn(step_model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    elapsed = time.perf_counter() - t0
    out = {"img_s": round(batch * steps / elapsed, 1), "peak_gib": _peak_gib(device), "setup_s": round(setup, 1)}
    if tuned:
        out["tuned"] = {"optimizer": kernels, "compile_mode": mode, "inductor": options}
        if note:
            out["note"] = note
    if profile:
        out["profile"] = profile_steps(step, device)
    return out


def trainer_run(family: str, arch: str, *, batch: int, size: int, steps: int, extra: list[str],
                device: torch.device, data: str | None = None, backend: str = "synthetic", workers: int = 5,
                print_freq: int = 10, compile_options: tuple[str, ...] = (), stream_priority: str = "high") -> dict:
    if family == "efficientnet":
        from efficientnet.main import build_parser, config_from_args
    else:
        from gpunet.main import build_parser, config_from_args
    from image_classification.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        classes = len([d for d in Path(data, "train").iterdir() if d.is_dir()]) if data else 1000
        argv = ["--data-backend", backend, "--arch", arch, "-b", str(batch), "--image-size", str(size),
                "--memory-format", "nhwc", "--epochs", "1", "--prof", str(steps), "--training-only",
                "--no-checkpoints", "--print-freq", str(print_freq), "--no-progress", "--num_classes", str(classes),
                "--label-smoothing", "0.1", "--workspace", tmp, "-j", str(workers),
                "--stream-priority", stream_priority, *extra,
                *(arg for option in compile_options for arg in ("--compile-option", option))]
        argv += ["--amp"] if device.type == "cuda" else ["--cpu"]
        if data:
            argv.insert(0, data)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        summary = train(config_from_args(build_parser().parse_args(argv)))
        wall = time.perf_counter() - t0
        img_s, windows = steady_images_per_second(Path(tmp) / "experiment_raport.json", summary)
    return {"img_s": img_s, "windows": windows, "peak_gib": _peak_gib(device), "wall_s": round(wall, 1)}


def steady_images_per_second(report: Path, summary: dict) -> tuple[float, int]:
    """(median train.total_ips of the trainer's print windows after the first two, number of windows). The first two
    hold compilation, CUDA-graph recording and cuDNN's autotuning."""
    from common.dllogger import read_report

    records = list(read_report(report))
    windows = [r["data"]["train.total_ips"] for r in records
               if r.get("type") == "LOG" and len(r.get("step") or []) == 2 and "train.total_ips" in r["data"]]
    if not windows:
        # Once seen on the H100 (first DALI run in a fresh process): say what the run did, to find out why.
        keys = ("epochs_done", "stopped", "early_stopped", "metrics")
        raise RuntimeError(f"the trainer logged no training windows ({len(records)} report records; "
                           f"{ {k: summary.get(k) for k in keys} })")
    steady = windows[2:] or windows
    return round(statistics.median(steady), 1), len(windows)


E2E_MODES = {"eager": [], "compile": ["--compile"],
             "compile-graphs": ["--compile", "--compile-mode", "reduce-overhead"]}


def rows(args, device: torch.device):
    import timm

    from image_classification.data.choices import reads_folder
    from image_classification.models import create_model

    b0 = dict(batch=args.b0_batch, size=args.b0_size, device=device)
    g0 = dict(batch=args.gpunet_batch, size=args.gpunet_size, device=device)
    b0t, g0t = (dict(d, print_freq=args.print_freq, compile_options=tuple(args.compile_option),
                     stream_priority=args.stream_priority) for d in (b0, g0))
    b0p, g0p = (dict(d, steps=args.steps, warmup=args.warmup, profile=args.profile) for d in (b0, g0))
    e2e = {}
    if args.jpeg_data:
        for backend in ["synthetic", *args.e2e_backends]:
            e2e[f"e2e-b0-{backend}"] = (
                lambda backend=backend: trainer_run(
                    "efficientnet", "efficientnet-b0", **b0t, steps=args.e2e_steps,
                    extra=E2E_MODES[args.e2e_mode]
                    + (["--augmentation", args.e2e_augmentation] if args.e2e_augmentation else [])
                    + (["--prefetch", str(args.e2e_prefetch)] if args.e2e_prefetch else []),
                    data=args.jpeg_data if reads_folder(backend) else None, backend=backend, workers=args.workers))
    return {
        "timm-b0-eager": lambda: plain_loop(timm.create_model("efficientnet_b0"), **b0p, compile=False),
        "timm-b0-compile": lambda: plain_loop(timm.create_model("efficientnet_b0"), **b0p, compile=True),
        "timm-b0-tuned": lambda: plain_loop(timm.create_model("efficientnet_b0"), **b0p, compile=True, tuned=True),
        "plain-b0-eager": lambda: plain_loop(create_model("efficientnet-b0"), **b0p, compile=False),
        "plain-b0-compile": lambda: plain_loop(create_model("efficientnet-b0"), **b0p, compile=True),
        "ours-b0-eager": lambda: trainer_run("efficientnet", "efficientnet-b0", **b0t, steps=args.trainer_steps,
                                             extra=[]),
        "ours-b0-compile": lambda: trainer_run("efficientnet", "efficientnet-b0", **b0t, steps=args.trainer_steps,
                                               extra=["--compile"]),
        "ours-b0-compile-graphs": lambda: trainer_run("efficientnet", "efficientnet-b0", **b0t,
                                                      steps=args.trainer_steps,
                                                      extra=["--compile", "--compile-mode", "reduce-overhead"]),
        "plain-gpunet0-eager": lambda: plain_loop(create_model("gpunet-0"), **g0p, compile=False),
        "plain-gpunet0-compile": lambda: plain_loop(create_model("gpunet-0"), **g0p, compile=True),
        "plain-gpunet0-tuned": lambda: plain_loop(create_model("gpunet-0"), **g0p, compile=True, tuned=True),
        "ours-gpunet0-eager": lambda: trainer_run("gpunet", "gpunet-0", **g0t, steps=args.trainer_steps, extra=[]),
        "ours-gpunet0-compile": lambda: trainer_run("gpunet", "gpunet-0", **g0t, steps=args.trainer_steps,
                                                    extra=["--compile"]),
        "ours-gpunet0-compile-graphs": lambda: trainer_run("gpunet", "gpunet-0", **g0t, steps=args.trainer_steps,
                                                           extra=["--compile", "--compile-mode", "reduce-overhead"]),
        **e2e,
    }


def main(argv=None) -> int:
    from image_classification.data.choices import folder_backends
    from image_classification.training.config import STREAM_PRIORITIES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", default=None,
                   help="row names or prefixes, e.g. ours-b0 or e2e (default: all)")
    p.add_argument("--b0-batch", type=int, default=256)
    p.add_argument("--gpunet-batch", type=int, default=192)
    p.add_argument("--b0-size", type=int, default=224)
    p.add_argument("--gpunet-size", type=int, default=320)
    p.add_argument("--jpeg-data", default=None, metavar="DIR",
                   help="ImageFolder of JPEGs (benchmarks/make_jpegs.py) for the e2e rows")
    p.add_argument("--e2e-backends", nargs="+", default=folder_backends())  # every backend that reads the JPEGs
    p.add_argument("--e2e-mode", default="compile", choices=list(E2E_MODES),
                   help="trainer configuration of the e2e rows")
    p.add_argument("--e2e-steps", type=int, default=80, help="--prof of the e2e rows")
    p.add_argument("--e2e-augmentation", default=None, help="--augmentation of the e2e rows, e.g. autoaugment")
    p.add_argument("--e2e-prefetch", type=int, default=None, metavar="N",
                   help="--prefetch of the e2e rows (batches queued per worker; DALI's prefetch_queue_depth)")
    p.add_argument("-j", "--workers", type=int, default=os.cpu_count() or 1, help="loader workers of the e2e rows")
    p.add_argument("--cpu", action="store_true", help="smoke-run on the CPU (fp32, no AMP; figures meaningless)")
    p.add_argument("--steps", type=int, default=30, help="timed steps of the plain loops")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--print-freq", type=int, default=10, help="trainer rows: steps per timed window")
    p.add_argument("--trainer-steps", type=int, default=60, help="--prof of the trainer rows")
    p.add_argument("--profile", action="store_true", help="plain-loop rows: GPU time by kernel kind, top kernels")
    p.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE",
                   help="set a torch._inductor.config value for every compiled row (exploration), e.g. "
                        "conv_1x1_as_mm=True; the trainer's own options (--compile-option) win; repeatable")
    p.add_argument("--compile-option", action="append", default=[], metavar="KEY=VALUE",
                   help="trainer rows: passed on as the trainer's --compile-option (over its defaults, e.g. "
                        "realize_reads_threshold=4 for Inductor's own); repeatable")
    p.add_argument("--stream-priority", default="high", choices=STREAM_PRIORITIES,
                   help="trainer rows: the trainer's --stream-priority (high: ahead of a GPU data pipeline)")
    p.add_argument("--dali-hw-decoder-load", type=float, default=None, metavar="F",
                   help="dali-gpu: share of JPEG decoding given to the hardware decoder (exploration)")
    p.add_argument("--cudnn-benchmark-limit", type=int, default=None, metavar="N",
                   help="cuDNN algorithms tried per convolution by its autotuner (PyTorch's default 10; 0 = all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("error: this benchmark needs a CUDA device (or --cpu for a smoke run)")
    device = torch.device("cpu" if args.cpu else "cuda")
    torch.backends.cudnn.benchmark = True
    if args.cudnn_benchmark_limit is not None:
        torch.backends.cudnn.benchmark_limit = args.cudnn_benchmark_limit
    if args.inductor:
        import torch._inductor.config as inductor_config

        from image_classification.cli.run_flags import key_value

        for item in args.inductor:
            inductor_config.__setattr__(*key_value(item))
    if args.dali_hw_decoder_load is not None:
        from image_classification.data import dali

        dali.HW_DECODER_LOAD = args.dali_hw_decoder_load
    table = rows(args, device)
    names = list(table)
    if args.only is not None:
        names = list(dict.fromkeys(n for o in args.only for n in table if n == o or n.startswith(o + "-")))
        if not names:
            sys.exit(f"error: no row matches --only {' '.join(args.only)}; rows: {' '.join(table)}")
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
               "cpus": os.cpu_count(), "inductor": args.inductor,
               "dali_hw_decoder_load": args.dali_hw_decoder_load,
               "cudnn_benchmark_limit": torch.backends.cudnn.benchmark_limit,
               "trainer_compile_options": args.compile_option, "stream_priority": args.stream_priority,
               "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "argv": sys.argv, "rows": {}}
    failed = False
    for name in names:
        torch._dynamo.reset()  # a fresh recompile budget per row (see image_classification.benchmark.measure)
        try:
            results["rows"][name] = table[name]()
        except Exception as exc:  # one failing row is a result too; keep measuring the others
            results["rows"][name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
            failed = True
        print(f"{name:28s} {json.dumps(results['rows'][name])}", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
