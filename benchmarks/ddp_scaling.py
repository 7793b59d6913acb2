"""DDP scaling on one node: the trainer on 1 and N GPUs (torchrun, NCCL), synthetic data, the same per-GPU batch.

    PYTHONPATH=. python benchmarks/ddp_scaling.py --gpus 1 2 --json scaling.json --markdown scaling.md
    PYTHONPATH=. python benchmarks/ddp_scaling.py --gpus 1 8 --only b0 --mode eager
    PYTHONPATH=. python benchmarks/ddp_scaling.py --cpu --gpus 1 2 --b0-batch 4 --b0-size 32 --steps 4 \\
        --print-freq 1 --only b0                               # a smoke run: gloo processes on the CPU

Rows: EfficientNet-B0 (AMP, batch 256 per GPU, 224 px) and GPUNet-0 (AMP, batch 192 per GPU, 320 px), channels_last,
SGD, label smoothing 0.1, EMA off, as benchmarks/train_speed.py's trainer rows. Every configuration is a fresh
`python -m torch.distributed.run --standalone --nproc_per_node N` of efficientnet/main.py or gpunet/main.py.
images/s is the median of the global train.total_ips of rank 0's print windows after the first two; scaling
efficiency is images/s on N GPUs over N times images/s on 1; peak memory is summary.json's `peak_gpu_memory_gib`
(the largest of any rank's). NVLink multicast stays off (NCCL_NVLS_ENABLE=0 and its PyTorch/NVSHMEM equivalents):
on shared hosts it can take the GPUs out of service.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import E2E_MODES, steady_images_per_second  # noqa: E402

MODELS = {
    "b0": ("efficientnet", "efficientnet-b0", "EfficientNet-B0"),
    "gpunet0": ("gpunet", "gpunet-0", "GPUNet-0"),
}
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def run_one(key: str, nproc: int, args) -> dict:
    family, arch, _ = MODELS[key]
    batch, size = (args.b0_batch, args.b0_size) if key == "b0" else (args.gpunet_batch, args.gpunet_size)
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                str(REPO / family / "main.py"), "--data-backend", "synthetic", "--arch", arch, "-b", str(batch),
                "--image-size", str(size), "--memory-format", "nhwc", "--epochs", "1", "--prof", str(args.steps),
                "--training-only", "--no-checkpoints", "--print-freq", str(args.print_freq), "--no-progress",
                "--label-smoothing", "0.1", "--num_classes", "1000", "--workspace", tmp, "-j", "2",
                *(["--cpu"] if args.cpu else ["--amp"]), *E2E_MODES[args.mode]]
        env = {**os.environ, **NO_MULTICAST, "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
        env.setdefault("OMP_NUM_THREADS", "1" if args.cpu else "4")
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout)
        wall = round(time.perf_counter() - t0, 1)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            return {"error": f"exit {proc.returncode}", "log_tail": tail, "wall_s": wall}
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        img_s, windows = steady_images_per_second(Path(tmp) / "experiment_raport.json", summary)
    if summary.get("world_size") != nproc:
        return {"error": f"the run reports world size {summary.get('world_size')}, not {nproc}", "wall_s": wall}
    return {"img_s": img_s, "per_gpu_img_s": round(img_s / nproc, 1), "windows": windows,
            "peak_gib": summary.get("peak_gpu_memory_gib"), "batch_per_gpu": batch, "image_size": size,
            "wall_s": wall}


def add_efficiency(rows: dict) -> None:
    for key in MODELS:
        base = rows.get(f"{key}-1", {}).get("img_s")
        for name, row in rows.items():
            if name.startswith(f"{key}-") and "img_s" in row and base:
                row["efficiency"] = round(row["img_s"] / (int(name.rsplit("-", 1)[1]) * base), 3)


def markdown(results: dict) -> str:
    lines = [f"{results['device']} x {max(results['gpus'])}, torch {results['torch']}, mode {results['mode']}, "
             f"{results['date']}", "",
             "| model | GPUs | batch per GPU | images/s | per GPU | scaling efficiency | peak GiB |",
             "|---|---|---|---|---|---|---|"]
    for name, row in results["rows"].items():
        key, n = name.rsplit("-", 1)
        label = MODELS[key][2]
        if "error" in row:
            lines.append(f"| {label} | {n} | | {row['error']} | | | |")
            continue
        eff = f"{100 * row['efficiency']:.1f}%" if "efficiency" in row else ""
        lines.append(f"| {label} | {n} | {row['batch_per_gpu']} | {row['img_s']:,.0f} | {row['per_gpu_img_s']:,.0f} "
                     f"| {eff} | {row['peak_gib'] if row['peak_gib'] is not None else '-'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 2], metavar="N",
                   help="process counts to run; 1 must be among them for the efficiency (default: 1 2)")
    p.add_argument("--only", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--mode", choices=list(E2E_MODES), default="compile-graphs",
                   help="trainer configuration (default: compiled, replayed as CUDA graphs, as the H100 presets)")
    p.add_argument("--b0-batch", type=int, default=256)
    p.add_argument("--b0-size", type=int, default=224)
    p.add_argument("--gpunet-batch", type=int, default=192)
    p.add_argument("--gpunet-size", type=int, default=320)
    p.add_argument("--steps", type=int, default=80, help="--prof: training steps of each run")
    p.add_argument("--print-freq", type=int, default=10, help="steps per timed window")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed for each run")
    p.add_argument("--cpu", action="store_true", help="smoke-run with gloo processes on the CPU (figures meaningless)")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)
    if any(n < 1 for n in args.gpus):
        p.error("--gpus: process counts must be at least 1")
    if 1 not in args.gpus:
        p.error("--gpus must include 1: efficiency is measured against one GPU in the same run")
    if args.cpu and args.mode != "eager":
        p.error("--cpu runs --mode eager (the compiled modes are for GPUs here)")
    import torch

    if not args.cpu:
        if not torch.cuda.is_available():
            p.error("this benchmark needs CUDA GPUs (or --cpu for a smoke run)")
        if max(args.gpus) > torch.cuda.device_count():
            p.error(f"--gpus {max(args.gpus)}: this machine has {torch.cuda.device_count()} GPU(s)")
    results = {"device": "cpu" if args.cpu else torch.cuda.get_device_name(), "torch": torch.__version__,
               "gpus": sorted(set(args.gpus)), "mode": args.mode, "steps": args.steps,
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv, "rows": {}}
    failed = False
    for key in args.only:
        for n in results["gpus"]:
            row = run_one(key, n, args)
            failed |= "error" in row
            results["rows"][f"{key}-{n}"] = row
            add_efficiency(results["rows"])
            print(f"{key}-{n:<3d} {json.dumps(row)}", flush=True)
            if args.json:  # after every row: a run cut short keeps what it measured
                Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
