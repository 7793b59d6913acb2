"""ImageFolder reading with per-sample deterministic augmentation and explicit handling of unreadable images."""
from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from common.cli_errors import UserError


@dataclass
class BadSample:
    """Returned instead of a sample when an image cannot be read; the main process decides what to do."""

    path: str
    reason: str


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_rgb(path: str) -> Image.Image:
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")  # convert() forces the full decode while the file is open


def sample_seed(base_seed: int, epoch: int, index: int) -> int:
    digest = hashlib.blake2b(f"{base_seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class _ForkedRNG:
    """Seed python, numpy and torch for one sample, restoring the main process's RNG state afterwards (with -j 0 the
    transforms would otherwise consume the training RNG and make results depend on the worker count)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.restore = get_worker_info() is None
        if self.restore:
            self.states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        if self.restore:
            random.setstate(self.states[0])
            np.random.set_state(self.states[1])
            torch.set_rng_state(self.states[2])


def walk_without_loops(top: str | os.PathLike):
    """os.walk that follows symbolic links to folders, sorted, and refuses a link to a folder the walk is already
    inside (os.walk would go round such a loop until the path got too long, listing the same images each time)."""
    top = os.fspath(top)
    for dirpath, dirnames, files in os.walk(top, followlinks=True):
        dirnames.sort()
        inside = None  # the real folders on the way from top here; computed only when a link needs them
        for name in dirnames:
            link = os.path.join(dirpath, name)
            if not os.path.islink(link):
                continue
            inside = inside or _real_folders_on_the_way(top, dirpath)
            target = os.path.realpath(link)
            if target in inside:
                raise UserError(f"{link} points to {target}, a folder it is already inside (a symbolic link loop): "
                                f"remove the link or point it elsewhere")
        yield dirpath, sorted(files)


def _real_folders_on_the_way(top: str, dirpath: str) -> set[str]:
    relative = os.path.relpath(dirpath, top)
    steps = [] if relative == os.curdir else relative.split(os.sep)
    path, real = top, {os.path.realpath(top)}
    for step in steps:
        path = os.path.join(path, step)
        real.add(os.path.realpath(path))
    return real


def image_files(folder: str | os.PathLike) -> list[str]:
    """The image files under `folder`, recursively: sorted by folder path, then by name (the order runs and resumes
    rely on)."""
    return [os.path.join(dirpath, name) for dirpath, files in sorted(walk_without_loops(folder))
            for name in files if name.lower().endswith(IMG_EXTENSIONS)]


class ImageFolderDataset(Dataset):
    """`root/<class>/<image>` like torchvision's ImageFolder, with clear errors for missing or empty folders.

    Indices may be plain ints or (epoch, index) pairs from `ShardSampler`; with a seed, the augmentation of a sample
    depends only on (seed, epoch, index), so results do not depend on worker count, and a resumed run repeats
    exactly the augmentations of an uninterrupted one.
    """

    def __init__(self, root: str | os.PathLike, transform, *, seed: int | None = None):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root} does not exist: expected an ImageFolder (<root>/<class>/<image>)")
        try:
            self.classes, self.class_to_idx = find_classes(str(root))
        except FileNotFoundError:
            raise UserError(f"{root} has no class folders: expected <root>/<class>/<image>") from None
        samples = []
        for cls in self.classes:
            found = image_files(root / cls)
            if not found:
                # torchvision refuses an empty class too: a class no image can teach is a mistake in the data.
                raise UserError(f"class folder {root / cls} holds no images (looked for {', '.join(IMG_EXTENSIONS)}): "
                                f"add its images or remove the folder")
            samples += [(path, self.class_to_idx[cls]) for path in found]
        self.root = root
        self.samples = samples
        self.targets = [t for _, t in samples]
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        path, target = self.samples[index]
        try:
            image = read_rgb(path)
        except Exception as exc:  # PIL raises many types for truncated or foreign files
            return BadSample(path, _reason(exc))
        if self.seed is None:
            return self.transform(image), target
        with _ForkedRNG(sample_seed(self.seed, epoch, index)):
            return self.transform(image), target


def find_bad_images(paths: list[str], workers: int = 8) -> list[BadSample]:
    """Decode every image (threads: PIL releases the GIL while decoding) and list those that fail."""

    def check(path):
        try:
            read_rgb(path)
            return None
        except Exception as exc:
            return BadSample(path, _reason(exc))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [r for r in pool.map(check, paths) if r is not None]


def describe_bad_images(bad: list[BadSample], total: int, root: Path, limit: int = 3) -> str:
    shown = "; ".join(f"{b.path} ({b.reason})" for b in bad[:limit])
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{len(bad)} of {total} images under {root} cannot be read: {shown}{more}"
