"""Time the data loaders alone: images per second each backend delivers to the training device, no model.

    python -m image_classification.data.bench /data/imagenet --backends pytorch pytorch-gpu dali-gpu \\
        --split train -b 256 --image-size 224 -j 8 --batches 50 --warmup 10 --json loaders.json

Every backend is built through `image_classification.data.loader.build_data`, exactly as training builds it, and
yields the same batches (normalised float images on the device); `--warmup` batches are drawn first (worker start,
cuDNN/nvJPEG set-up), then `--batches` are timed (the GPU synchronised before the clock is read). A backend that
cannot run here (DALI not installed, no GPU) is listed as skipped with the reason; the others still run.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from common.cli_errors import ArgumentParser, UserError, non_negative_int, positive_int, run_cli

from .choices import needs_cuda, reads_folder
from .config import DataConfig
from .loader import BACKENDS, build_data


@dataclass
class Row:
    backend: str
    device: str
    workers: int | None
    status: str  # ok | skipped | failed
    images_per_s: float | None = None
    ms_per_batch: float | None = None
    batches: int = 0
    images: int = 0
    setup_s: float | None = None
    reason: str = ""






def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(loader, split: str):
    """Batches without end: a new epoch (for training, a new shuffle) whenever the loader runs out."""
    epoch = 0
    while True:
        if split == "train" and getattr(loader, "sampler", None) is not None:
            loader.sampler.set_epoch(epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise UserError("the loader yielded no batches")
        epoch += 1


def _time_loader(cfg: DataConfig, *, split: str, image_size: int, crop_pct: float, batches: int, warmup: int,
                device: torch.device) -> tuple[int, float, float]:
    """(images, seconds for the timed batches, set-up seconds incl. warm-up)."""
    from image_classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD

    start = time.perf_counter()
    bundle = build_data(cfg, image_size=image_size, val_image_size=image_size, crop_pct=crop_pct,
                        mean=IMAGENET_MEAN, std=IMAGENET_STD, device=device, seed=0,
                        need_train=split == "train", need_val=split == "val")
    stream = _batches(bundle.train if split == "train" else bundle.val, split)
    try:
        for _ in range(warmup):
            next(stream)
        _sync(device)
        setup = time.perf_counter() - start
        t0 = time.perf_counter()
        images = 0
        for _ in range(batches):
            x, _ = next(stream)
            images += x.shape[0]
        _sync(device)
        return images, time.perf_counter() - t0, setup
    finally:
        stream.close()


def measure(backend: str, data: str | None, *, split: str, batch_size: int, image_size: int, workers: int,
            batches: int, warmup: int, device: torch.device, crop_pct: float = 0.875) -> Row:
    """Build one backend's loader and time it; a backend that cannot run here (UserError, or an optional module
    that is not installed) comes back as a skipped row with the reason."""
    row = Row(backend, str(device), workers if reads_folder(backend) else None, "skipped")
    if needs_cuda(backend) and device.type != "cuda":
        row.reason = f"{backend} needs a CUDA device" + (" (--cpu given)" if torch.cuda.is_available() else "")
        return row
    cfg = DataConfig(data=data, data_backend=backend, batch_size=batch_size, val_batch_size=batch_size,
                     workers=workers, synthetic_steps=warmup + batches)
    try:
        images, elapsed, setup = _time_loader(cfg, split=split, image_size=image_size, crop_pct=crop_pct,
                                              batches=batches, warmup=warmup, device=device)
    except UserError as exc:
        row.reason = str(exc)
        return row
    except ImportError as exc:
        row.reason = f"cannot import {exc.name or 'a module'}: {exc}"
        return row
    finally:
        gc.collect()  # the loader is gone: stop its workers before the next backend starts its own
    row.status = "ok"
    row.batches, row.images, row.setup_s = batches, images, round(setup, 2)
    row.images_per_s = round(images / elapsed, 1)
    row.ms_per_batch = round(elapsed / batches * 1e3, 3)
    return row


def format_table(rows: list[Row]) -> str:
    head = f"{'backend':12s} {'device':8s} {'workers':>7s} {'images/s':>10s} {'ms/batch':>10s}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        workers = "-" if r.workers is None else str(r.workers)
        ips = f"{r.images_per_s:10.1f}" if r.images_per_s is not None else f"{'-':>10s}"
        ms = f"{r.ms_per_batch:10.3f}" if r.ms_per_batch is not None else f"{'-':>10s}"
        status = r.status if not r.reason else f"{r.status}: {r.reason}"
        lines.append(f"{r.backend:12s} {r.device:8s} {workers:>7s} {ips} {ms}  {status}")
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m image_classification.data.bench", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA_DIR", help="dataset root holding train/ and val/ ImageFolders")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS, metavar="BACKEND",
                   help=f"loaders to time: {' '.join(BACKENDS)} (default: all)")
    p.add_argument("--split", default="train", choices=("train", "val"),
                   help="train (random crops, shuffled) or val (resize and centre crop)")
    p.add_argument("-b", "--batch-size", type=positive_int, default=256, metavar="N")
    p.add_argument("--image-size", type=positive_int, default=224, metavar="PX")
    p.add_argument("-j", "--workers", type=non_negative_int, default=min(8, os.cpu_count() or 1), metavar="N",
                   help="data loading workers (default: min(8, CPU count))")
    p.add_argument("--batches", type=positive_int, default=50, metavar="N", help="timed batches")
    p.add_argument("--warmup", type=non_negative_int, default=10, metavar="N", help="batches drawn before timing")
    p.add_argument("--cpu", action="store_true", help="deliver to the CPU even when a GPU is present")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    backends = list(dict.fromkeys(args.backends))
    if any(reads_folder(b) for b in backends) and not Path(args.data).is_dir():
        raise UserError(f"data folder {args.data} does not exist")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host_cpus": os.cpu_count(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "data": str(args.data),
        "split": args.split,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "command": " ".join(sys.argv),
    }
    print(f"{meta['device']}, {meta['host_cpus']} CPUs, torch {meta['torch']}: {args.split} split, batch "
          f"{args.batch_size}, {args.image_size} px, {args.warmup} warm-up + {args.batches} timed batches", flush=True)
    rows = []
    for backend in backends:
        try:
            row = measure(backend, args.data, split=args.split, batch_size=args.batch_size,
                          image_size=args.image_size, workers=args.workers, batches=args.batches, warmup=args.warmup,
                          device=device)
        except Exception as exc:  # a bug in one backend must not hide the others' results
            first = (str(exc).strip().splitlines() or [""])[0]
            row = Row(backend, str(device), args.workers if reads_folder(backend) else None, "failed",
                      reason=f"{type(exc).__name__}: {first}")
        rows.append(row)
        print(format_table([row]).splitlines()[-1], flush=True)
    print()
    print(format_table(rows))
    if args.json:
        from common.atomic_files import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump({**meta, "rows": [asdict(r) for r in rows]}, f, indent=1)
    return 1 if any(r.status == "failed" for r in rows) else 0


if __name__ == "__main__":
    run_cli(main)
