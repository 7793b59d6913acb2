"""Write an ImageFolder of ImageNet-shaped JPEGs for loader and end-to-end training benchmarks.

    python benchmarks/make_jpegs.py /tmp/jpegs --train 20000 --val 2000 --classes 100

The built-in digits are 8x8 images upscaled, so their JPEGs decode far faster than ImageNet's; timing a loader on
them would flatter it. These images have ImageNet's shape instead: widths and heights drawn around ImageNet's
(mostly 500x375 / 375x500, some smaller and larger), colour structure at several scales plus sensor-like noise, saved
at quality 90, which lands near ImageNet's average of about 110 KB a file. The content is random (the benchmark
measures speed, not accuracy); the files are deterministic for a given --seed.
"""
from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

# (width, height, weight): ImageNet's train set is dominated by 500x375 and 375x500, with a tail of other sizes.
SHAPES = ((500, 375, 0.55), (375, 500, 0.15), (500, 333, 0.1), (333, 500, 0.05), (400, 300, 0.05), (640, 480, 0.05),
          (800, 600, 0.05))


def _image(rng: np.random.Generator) -> Image.Image:
    w, h, _ = SHAPES[rng.choice(len(SHAPES), p=[s[2] for s in SHAPES])]
    img = np.zeros((h, w, 3), np.float32)
    for cells, amplitude in ((3, 90.0), (12, 45.0), (48, 30.0), (160, 15.0)):  # coarse shapes, objects, texture
        small = rng.normal(0, amplitude, (cells, max(2, cells * w // h), 3)).astype(np.float32)
        img += np.asarray(Image.fromarray(small[..., 0]).resize((w, h), Image.BICUBIC))[..., None] * 0.3
        for c in range(3):
            img[..., c] += np.asarray(Image.fromarray(small[..., c]).resize((w, h), Image.BICUBIC)) * 0.7
    img += rng.normal(0, 14.0, img.shape).astype(np.float32)
    img += rng.uniform(60, 190, 3).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _write(job: tuple[str, int, int]) -> int:
    path, seed, index = job
    _image(np.random.default_rng([seed, index])).save(path, quality=90)
    return os.path.getsize(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output")
    p.add_argument("--train", type=int, default=20000, help="training images (default 20000)")
    p.add_argument("--val", type=int, default=2000, help="validation images (default 2000)")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-j", "--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    if min(args.train, args.val) < args.classes:
        p.error("--train and --val need at least one image per class")
    jobs = []
    for split, count in (("train", args.train), ("val", args.val)):
        for c in range(args.classes):
            Path(args.output, split, f"c{c:04d}").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = Path(args.output, split, f"c{i % args.classes:04d}", f"{split}_{i:07d}.JPEG")
            jobs.append((str(path), args.seed, len(jobs)))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        sizes = list(pool.map(_write, jobs, chunksize=64))
    print(f"{len(sizes)} JPEGs in {args.output}: mean {np.mean(sizes) / 1e3:.0f} KB, "
          f"{sum(sizes) / 1e9:.2f} GB, written in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
