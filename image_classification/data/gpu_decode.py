"""The `pytorch-gpu` backend: JPEG decoding with nvJPEG (torchvision.io.decode_jpeg on the GPU), no DALI needed.

DataLoader workers only read the file bytes (and plan each sample's crop on the host, seeded by (seed, epoch,
index) exactly as the pytorch backend seeds its transforms, so the two draw the same crops and flips); the main
process decodes a whole batch at once on the device, crops and resizes every image there (antialiased
bilinear/bicubic `interpolate`), flips, normalises and stacks. Files nvJPEG should not get (PNG and other formats,
grey or CMYK JPEGs, JPEGs without an end marker) are decoded on the CPU in the workers and join the batch as
pixels. The batches honour the contract of every backend (see `device.DeviceLoader`); with device=cpu the same
path runs with decode_jpeg on the CPU.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, get_worker_info

from common.cli_errors import UserError

from . import augmentations
from .config import DataConfig
from .device import DeviceLoader
from .folder import BadSample, ImageFolderDataset, _reason, read_rgb, sample_seed
from .samplers import ShardSampler
from .transforms import val_resize_size
from .workers import ignore_stop_signals

BACKEND = "pytorch-gpu"
MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}  # nearest-exact is PIL's nearest
RANDOM_MODES = ("bilinear", "bicubic")
# Frame types nvJPEG gets: baseline, extended and progressive Huffman. Lossless and arithmetic-coded JPEGs (rare)
# are decoded on the CPU.
GPU_SOF = (0xC0, 0xC1, 0xC2)
EOI_SEARCH = 4096  # bytes at the end of a file searched for the end-of-image marker (some files carry trailing data)


# --------------------------------------------------------------------------------------------------------- host side

class JpegHeader(NamedTuple):
    marker: int  # the frame type: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...
    height: int
    width: int
    components: int  # 1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK
    scan: int | None  # offset of the first start-of-scan marker; None when the file ends before it


def jpeg_header(data) -> JpegHeader | None:
    """The frame header of a JPEG file (`data` bytes-like); None when `data` is no JPEG or its header is broken."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    frame = None
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        start = pos
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            continue
        if marker == 0xD9 or pos + 2 > n:  # end of image before any scan
            break
        if marker == 0xDA:
            return JpegHeader(*frame, start) if frame else None
        length = (data[pos] << 8) | data[pos + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and frame is None:
            if pos + 8 > n or length < 8:
                return None
            frame = (marker, (data[pos + 3] << 8) | data[pos + 4], (data[pos + 5] << 8) | data[pos + 6], data[pos + 7])
        pos += length
    return JpegHeader(*frame, None) if frame else None


def has_end_marker(data, scan: int) -> bool:
    """Whether the end-of-image marker follows the scan data within the file's last bytes: a truncated file has
    none (nvJPEG may decode such a file without complaint; libjpeg-turbo on the CPU refuses it). Entropy-coded
    data cannot hold the marker's bytes, and files with much trailing data after it merely go to the CPU."""
    return data.rfind(b"\xff\xd9", max(scan, len(data) - EOI_SEARCH)) >= 0


def decode_on_cpu(data: torch.Tensor, path: str) -> torch.Tensor:
    """Any image file as a uint8 RGB CHW tensor: torchvision's decoders, then PIL (BMP, TIFF, ...)."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        image = decode_image(data, mode=ImageReadMode.RGB)
        if image.ndim == 3 and image.shape[0] == 3:
            return image
    except (RuntimeError, ValueError):
        pass
    return torch.from_numpy(np.asarray(read_rgb(path)).copy()).permute(2, 0, 1)  # raises for unreadable files


@dataclass(frozen=True)
class Plan:
    """What the device does to one decoded image of size `source` (h, w): crop [top:top+height, left:left+width],
    resize to `resize` (h, w) with `mode`, take the output window at (out_top, out_left), then flip."""

    source: tuple[int, int]
    top: int
    left: int
    height: int
    width: int
    resize: tuple[int, int]
    out_top: int
    out_left: int
    mode: str
    hflip: bool = False
    vflip: bool = False


class Planner:
    """Per-sample geometry, seeded by (seed, epoch, index). Training draws its random numbers in the order
    torchvision's RandomResizedCrop, RandomHorizontalFlip and RandomVerticalFlip draw them after
    `torch.manual_seed(sample_seed(...))` (what the pytorch backend does), so both backends crop and flip alike."""

    def __init__(self, image_size: int, *, train: bool, seed: int = 0, interpolation: str = "bilinear",
                 crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip: float = 0.5, vflip: float = 0.0,
                 crop_pct: float = 0.875):
        self.size, self.train, self.seed = image_size, train, seed
        self.interpolation = interpolation
        self.scale = tuple(float(s) for s in crop_scale)
        self.ratio = tuple(float(r) for r in crop_ratio)
        log_ratio = torch.log(torch.tensor(self.ratio))
        self.log_ratio = (log_ratio[0].item(), log_ratio[1].item())
        self.hflip, self.vflip = hflip, vflip
        self.resize_size = None if train else val_resize_size(image_size, crop_pct)

    def __call__(self, height: int, width: int, epoch: int, index: int) -> Plan:
        return self._train(height, width, epoch, index) if self.train else self._val(height, width)

    def _val(self, height: int, width: int) -> Plan:
        # torchvision's Resize(int) (shorter side, the longer truncated) then CenterCrop.
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        out_top = int(round((new_h - self.size) / 2.0))
        out_left = int(round((new_w - self.size) / 2.0))
        return Plan((height, width), 0, 0, height, width, (new_h, new_w), out_top, out_left, MODES[self.interpolation])

    def _train(self, height: int, width: int, epoch: int, index: int) -> Plan:
        g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
        top, left, h, w = self._crop(height, width, g)
        if self.interpolation == "random":
            mode = RANDOM_MODES[int(torch.randint(0, 2, (1,), generator=g).item())]
        else:
            mode = MODES[self.interpolation]
        hflip = self.hflip > 0 and torch.rand(1, generator=g).item() < self.hflip
        vflip = self.vflip > 0 and torch.rand(1, generator=g).item() < self.vflip
        return Plan((height, width), top, left, h, w, (self.size, self.size), 0, 0, mode, hflip, vflip)

    def _crop(self, height: int, width: int, g: torch.Generator) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop.make_params, with an explicit generator."""
        area = height * width
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(self.scale[0], self.scale[1], generator=g).item()
            aspect_ratio = math.exp(torch.empty(1).uniform_(self.log_ratio[0], self.log_ratio[1], generator=g).item())
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                i = int(torch.randint(0, height - h + 1, size=(1,), generator=g).item())
                j = int(torch.randint(0, width - w + 1, size=(1,), generator=g).item())
                return i, j, h, w
        in_ratio = float(width) / float(height)
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w


class EncodedImageFolder(Dataset):
    """An ImageFolder whose samples are (bytes or pixels, target, plan, path): JPEGs nvJPEG can take stay encoded
    (a 1-d uint8 tensor of the file), anything else is decoded here on the CPU (a uint8 CHW tensor). Keys are
    (epoch, index) pairs from ShardSampler. Unreadable files come back as BadSample."""

    def __init__(self, folder: ImageFolderDataset, planner: Planner):
        self.root, self.classes, self.samples = folder.root, folder.classes, folder.samples
        self.planner = planner

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        path, target = self.samples[index]
        try:
            data, height, width = self._read(path)
        except Exception as exc:  # unreadable: the decoders and PIL raise many types
            return BadSample(path, _reason(exc))
        return data, target, self.planner(height, width, epoch, index), path

    @staticmethod
    def _read(path: str) -> tuple[torch.Tensor, int, int]:
        with open(path, "rb") as f:
            buf = bytearray(os.fstat(f.fileno()).st_size)
            f.readinto(buf)
        data = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
        header = jpeg_header(buf)
        if (header is not None and header.marker in GPU_SOF and header.components == 3 and header.height > 0
                and header.width > 0 and header.scan is not None and has_end_marker(buf, header.scan)):
            return data, header.height, header.width
        pixels = decode_on_cpu(data, path)
        return pixels, pixels.shape[1], pixels.shape[2]


@dataclass
class EncodedBatch:
    """One batch as it leaves a worker: every sample's bytes or pixels packed into one uint8 tensor (one
    shared-memory block instead of one per image)."""

    blob: torch.Tensor
    spans: list[tuple[int, int]]
    shapes: list[tuple[int, ...] | None]  # None: JPEG bytes for the device decoder; else the CHW shape of pixels
    targets: torch.Tensor
    plans: list[Plan]
    paths: list[str]
    bad: list[BadSample]


def collate_encoded(batch) -> EncodedBatch:
    good = [s for s in batch if not isinstance(s, BadSample)]
    bad = [s for s in batch if isinstance(s, BadSample)]
    spans, offset = [], 0
    for data, *_ in good:
        spans.append((offset, data.numel()))
        offset += data.numel()
    blob = torch.empty(offset, dtype=torch.uint8)
    if get_worker_info() is not None:
        blob.share_memory_()
    if good:
        torch.cat([s[0].reshape(-1) for s in good], out=blob)
    return EncodedBatch(
        blob, spans, [None if s[0].ndim == 1 else tuple(s[0].shape) for s in good],
        torch.tensor([s[1] for s in good], dtype=torch.int64), [s[2] for s in good], [s[3] for s in good], bad,
    )


# ------------------------------------------------------------------------------------------------------- device side

def decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Decode a batch of JPEG files (1-d uint8 CPU tensors) to RGB uint8 CHW tensors on `device`: one batched
    nvJPEG call on CUDA. When the batch call fails, each file is tried alone; None for those that fail."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not data:
        return []
    if device.type == "cuda":
        # torchvision allocates the outputs on the current stream but writes them from its own stream without
        # waiting for this one (pytorch/vision#9606): let the current stream's queued work finish first, or a
        # recycled block that work still reads could be overwritten.
        torch.cuda.current_stream(device).synchronize()
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except (RuntimeError, ValueError):
        pass
    out = []
    for d in data:
        try:
            out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
        except (RuntimeError, ValueError):
            out.append(None)
    return out


def render(image: torch.Tensor, plan: Plan, size: int) -> torch.Tensor:
    """One decoded uint8 CHW image -> float (3, size, size); the caller rounds and clamps to [0, 255] and flips, for
    the whole batch at once."""
    x = image[:, plan.top : plan.top + plan.height, plan.left : plan.left + plan.width].unsqueeze(0).float()
    if tuple(x.shape[-2:]) != plan.resize:
        smooth = plan.mode in ("bilinear", "bicubic")
        x = F.interpolate(x, size=plan.resize, mode=plan.mode, antialias=smooth,
                          align_corners=False if smooth else None)
    return x[0, :, plan.out_top : plan.out_top + size, plan.out_left : plan.out_left + size]


class GpuDecodeLoader(DeviceLoader):
    """Iterates (images, targets) on `device` from a DataLoader of EncodedBatch: DeviceLoader's attributes, side-stream
    overlap and handling of unreadable images, with decoding and cropping done here."""

    def __init__(self, loader: DataLoader, dataset: EncodedImageFolder, device: torch.device, mean, std, *,
                 image_size: int, memory_format=torch.contiguous_format, skip_bad: bool = False,
                 scan_workers: int = 8):
        super().__init__(loader, device, mean, std, memory_format=memory_format, skip_bad=skip_bad, dataset=dataset,
                         scan_workers=scan_workers)
        self.image_size = image_size

    def _decode(self, batch: EncodedBatch) -> tuple[list[torch.Tensor | None], list[BadSample]]:
        views = [batch.blob[o : o + n] for o, n in batch.spans]
        images: list[torch.Tensor | None] = [None] * len(views)
        jpegs = [k for k, shape in enumerate(batch.shapes) if shape is None]
        for k, image in zip(jpegs, decode_jpegs([views[k] for k in jpegs], self.device)):
            images[k] = image
        bad = []
        for k, shape in enumerate(batch.shapes):
            if shape is not None:
                images[k] = views[k].view(shape).to(self.device, non_blocking=True)
            elif images[k] is None:  # the device decoder refused it: the CPU decoders may not
                try:
                    images[k] = decode_on_cpu(views[k], batch.paths[k]).to(self.device, non_blocking=True)
                except Exception as exc:
                    bad.append(BadSample(batch.paths[k], _reason(exc)))
        return images, bad

    def _prepare(self, batch: EncodedBatch):
        if batch.bad:
            self._bad(batch.bad)
        images, bad = self._decode(batch)
        if bad:
            self._bad(bad)
        keep = [k for k, image in enumerate(images) if image is not None]
        if not keep:
            return None
        size = self.image_size
        out = torch.empty((len(keep), 3, size, size), device=self.device)
        for row, k in enumerate(keep):
            image, plan = images[k], batch.plans[k]
            if tuple(image.shape) != (3, *plan.source):
                raise RuntimeError(f"{batch.paths[k]}: decoded as {tuple(image.shape)}, planned for {plan.source}")
            out[row].copy_(render(image, plan, size))
        out.clamp_(0, 255).round_()  # what a uint8 resize (PIL's, on the pytorch backend) would hold
        for dim, flags in ((3, [batch.plans[k].hflip for k in keep]), (2, [batch.plans[k].vflip for k in keep])):
            rows = [row for row, flag in enumerate(flags) if flag]
            if rows:
                index = torch.tensor(rows, device=self.device)
                out[index] = out[index].flip(dim)
        out.sub_(self.mean).mul_(self.inv_std)
        targets = batch.targets if len(keep) == len(images) else batch.targets[keep]
        return out.contiguous(memory_format=self.memory_format), targets.to(self.device, non_blocking=True)


# ------------------------------------------------------------------------------------------------------------ factory

def _check(cfg, need_train: bool) -> None:
    if need_train and not cfg.no_aug:
        # The backend has no policy stage: the registry refuses every policy but the policy of no policy.
        augmentations.build(cfg.augmentation, augmentations.NVJPEG)
        if cfg.color_jitter > 0:
            raise UserError(f"colour jitter is not available on --data-backend {BACKEND}; use --data-backend pytorch")


def _mode(name: str, *, allow_random: bool) -> str:
    if name in MODES or (allow_random and name == "random"):
        return name
    choices = ", ".join(list(MODES) + (["random"] if allow_random else []))
    raise UserError(f"interpolation {name!r} is not available on the {BACKEND} backend; choose {choices}")


def build_gpu_decode_data(cfg: DataConfig, *, image_size: int, val_image_size: int, crop_pct: float, mean, std,
                          device: torch.device, memory_format: str, seed: int | None, num_classes: int | None, flag,
                          rank: int = 0, world_size: int = 1, need_train: bool = True, need_val: bool = True):
    from .bundle import check_val_classes, checked_bundle, split_folder

    _check(cfg, need_train)
    root = Path(cfg.data)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist")
    layout = torch.channels_last if memory_format == "nhwc" else torch.contiguous_format
    seed = seed or 0

    def make(folder, planner, *, size, batch_size, shuffle, drop_last):
        dataset = EncodedImageFolder(folder, planner)
        sampler = ShardSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
        kwargs = dict(persistent_workers=True, prefetch_factor=cfg.prefetch) if cfg.workers > 0 else {}
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=cfg.workers,
                            collate_fn=collate_encoded, drop_last=drop_last, worker_init_fn=ignore_stop_signals,
                            generator=torch.Generator().manual_seed(seed), **kwargs)
        return GpuDecodeLoader(loader, dataset, device, mean, std, image_size=size, memory_format=layout,
                               skip_bad=cfg.skip_bad_images, scan_workers=max(cfg.workers, 1))

    train = val = None
    classes = None
    if need_train:
        folder = ImageFolderDataset(split_folder(root, cfg.train_split), None)
        per_rank = -(-len(folder) // world_size)
        if per_rank < cfg.batch_size:
            raise UserError(f"{folder.root} has {len(folder)} images: fewer than one batch of {cfg.batch_size} per "
                            f"process; lower {flag('batch_size')}")
        if cfg.no_aug:
            planner = Planner(image_size, train=False, crop_pct=crop_pct,
                              interpolation=_mode(cfg.val_interpolation or "bilinear", allow_random=False))
        else:
            planner = Planner(image_size, train=True, seed=seed,
                              interpolation=_mode(cfg.interpolation, allow_random=True),
                              crop_scale=cfg.crop_scale, crop_ratio=cfg.crop_ratio, hflip=cfg.hflip, vflip=cfg.vflip)
        classes = folder.classes
        train = make(folder, planner, size=image_size, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    if need_val:
        planner = Planner(val_image_size, train=False, crop_pct=crop_pct,
                          interpolation=_mode(cfg.val_interpolation or cfg.interpolation, allow_random=False))
        folder = ImageFolderDataset(split_folder(root, cfg.val_split), None)
        classes = check_val_classes(classes, folder.classes)
        val = make(folder, planner, size=val_image_size, batch_size=cfg.val_batch_size or cfg.batch_size,
                   shuffle=False, drop_last=False)
    return checked_bundle(root, train, val, classes, num_classes=num_classes, flag=flag)
