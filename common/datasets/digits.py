"""Write scikit-learn's UCI handwritten digits as a JPEG ImageFolder: the project's built-in real data set.

1,797 8x8 grey images, 10 classes, upscaled to RGB JPEGs; a stratified split that depends only on --seed and
--val-fraction, so every machine writes the same files. Usage:

    python -m common.datasets.digits [--output data/digits] [--size 64] [--val-fraction 0.2] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from common.cli_errors import ArgumentParser, UserError, run_cli

MARKER = "digits.json"


def _split(labels, val_fraction: float, seed: int) -> set[int]:
    """Indices of the validation images: the same fraction of every class, chosen by a seeded shuffle."""
    import numpy as np

    rng = np.random.RandomState(seed)
    val = set()
    for cls in sorted(set(int(x) for x in labels)):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        val.update(int(i) for i in idx[: int(round(len(idx) * val_fraction))])
    return val


def write_digits(output: str | os.PathLike = "data/digits", size: int = 64, val_fraction: float = 0.2,
                 seed: int = 0, quality: int = 95, force: bool = False) -> dict:
    if size < 8:
        raise UserError(f"--size must be at least 8 pixels, got {size}")
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("scikit-learn is not installed: pip install scikit-learn") from None
    from PIL import Image

    output = Path(output)
    params = {"size": size, "val_fraction": val_fraction, "seed": seed, "quality": quality}
    marker = output / MARKER
    if output.exists():
        if marker.is_file() and not force:
            existing = json.loads(marker.read_text())
            if existing.get("params") == params:
                print(f"digits data already written at {output} ({existing['train']} train, {existing['val']} val)")
                return existing
            raise UserError(f"{output} holds digits written with {existing.get('params')}; pass --force to rewrite")
        if any(output.iterdir()) and not force:
            raise UserError(f"{output} exists and is not a digits data set; choose another --output or pass --force")

    digits = load_digits()
    val = _split(digits.target, val_fraction, seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target and rename, so an interrupted run never leaves a half data set behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    counts = {"train": 0, "val": 0}
    try:
        for i, (pixels, label) in enumerate(zip(digits.images, digits.target)):
            split = "val" if i in val else "train"
            folder = staging / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            grey = Image.fromarray((pixels * (255.0 / 16.0)).round().astype("uint8"), mode="L")
            grey.resize((size, size), Image.BICUBIC).convert("RGB").save(folder / f"{i:04d}.jpg", quality=quality)
            counts[split] += 1
        summary = {"params": params, **counts, "classes": 10}
        (staging / MARKER).write_text(json.dumps(summary, indent=1))
        if output.exists():
            shutil.rmtree(output)
        os.replace(staging, output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {counts['train']} train and {counts['val']} val images ({size}x{size}, 10 classes) to {output}")
    return summary


def main(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", "-o", default="data/digits", help="folder to write train/ and val/ into")
    parser.add_argument("--size", type=int, default=64, help="side of the written images in pixels")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of each class held out for val/")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
    parser.add_argument("--force", action="store_true", help="rewrite an existing folder")
    args = parser.parse_args(argv)
    write_digits(args.output, args.size, args.val_fraction, args.seed, args.quality, args.force)


if __name__ == "__main__":
    run_cli(main)
