"""`--data-backend dali-cpu | dali-gpu`: NVIDIA DALI pipelines with the same batch contract as the pytorch backend.

Batches are `(images, targets)`: float32 NCHW images normalised with mean/std (channels_last with
`--memory-format nhwc`) and int64 targets, both on the training device. The file list, the class order and the
per-rank sample order are the pytorch backend's: the images are listed as `ImageFolderDataset` lists them and
ordered by the same `ShardSampler` (a per-epoch permutation seeded by `--seed`, padded by wrapping so every rank
takes the same number of steps; validation takes `rank::world_size` without padding), and DALI's file reader
reads exactly that list (`fn.readers.file(files=..., labels=...)`, one shard per process, since the sharding is
already done). So both backends see the same images in the same order on every rank and every epoch, and a
resumed run (`sampler.set_epoch(epoch, start=...)`) reads exactly the images an uninterrupted run would still
have read. The random augmentation of those images does not replay: DALI draws from one generator per pipeline,
seeded by (seed, epoch, rank, start), so only the order, not each crop, matches an uninterrupted run.

A pipeline is built for each pass over the data (each epoch, each validation). That costs a fraction of a second
and makes every pass start cleanly, also after the trainer or the evaluator stopped a pass early (`--prof`).

DALI is imported only here and in augment_dali.py (the policies' steps), and only when one of these backends is
chosen.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from common.cli_errors import UserError

from . import augmentations
from .augment_dali import PipelineStep
from .config import DataConfig
from .folder import ImageFolderDataset, find_bad_images, sample_seed
from .samplers import ShardSampler

# nvJPEG preallocation of the mixed decoder, as upstream's DALI pipelines set it for ImageNet-sized JPEGs.
DEVICE_MEMORY_PADDING = 211_025_920
# Share of JPEGs sent to the GPU's hardware JPEG engines (A100/H100) by the mixed decoder; the rest go through the
# CUDA (SM) path. DALI's default is 0.65. With training on a high-priority stream (trainer.compute_stream) the SM path
# only fills the step's idle gaps, and at 0.65 the engines became the bottleneck: on an H100, B0 end to end with 8
# threads ran at 7,160 / 7,039 images/s with 0.5 against 6,620 / 6,709 with 0.65 (0.8: slower still;
# benchmarks/results/2026-11-24-h100/run6).
HW_DECODER_LOAD = 0.5
HOST_MEMORY_PADDING = 140_544_512


def import_dali(backend: str):
    """Import nvidia.dali or raise one clear line saying how to install it."""
    try:
        import nvidia.dali  # noqa: F401
        import nvidia.dali.fn  # noqa: F401
        import nvidia.dali.types  # noqa: F401
    except ImportError as exc:
        missing = exc.name in ("nvidia", "nvidia.dali") or "nvidia.dali" in str(exc)
        if missing:
            raise UserError(f"--data-backend {backend} needs NVIDIA DALI: pip install nvidia-dali-cuda130 "
                            f"(or nvidia-dali-cuda120 for CUDA 12), or use --data-backend pytorch") from None
        raise UserError(f"--data-backend {backend}: NVIDIA DALI is installed but does not import "
                        f"({_first_line(exc)}); reinstall it or use --data-backend pytorch") from None
    except OSError as exc:  # a shared library of the wheel that does not load
        raise UserError(f"--data-backend {backend}: NVIDIA DALI is installed but does not load "
                        f"({_first_line(exc)}); reinstall it or use --data-backend pytorch") from None
    return nvidia.dali


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------------------------------------------
# pipelines

_INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "triangular")


def _interp(types, name: str, *, allow_random: bool):
    # triangular: upstream's DALI-only choice (an antialiased linear filter when downscaling).
    table = {"bilinear": types.INTERP_LINEAR, "bicubic": types.INTERP_CUBIC, "nearest": types.INTERP_NN,
             "triangular": types.INTERP_TRIANGULAR}
    if name == "random":
        return "random" if allow_random else types.INTERP_LINEAR
    if name not in table:
        choices = ", ".join(_INTERPOLATIONS + (("random",) if allow_random else ()))
        raise UserError(f"interpolation {name!r} is not available on the DALI backend; choose {choices}")
    return table[name]


@dataclass(frozen=True)
class PipelineSpec:
    """Everything a pass needs besides its file list."""

    train: bool
    gpu_decode: bool  # dali-gpu: decode (nvJPEG) and process on the GPU
    device_id: int | None  # None: a CPU-only pipeline (training on the CPU)
    image_size: int
    resize_size: int  # val (and --no-aug training): shorter side before the centre crop
    interpolation: object  # a DALIInterpType, or "random"
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float]
    hflip: float
    vflip: float
    color_jitter: float  # 0 under a policy that alters colour itself
    augmentation: PipelineStep | None
    fill_value: int
    mean: tuple[float, float, float]  # 0..255 units
    std: tuple[float, float, float]
    channels_last: bool
    batch_size: int
    num_threads: int
    prefetch: int
    no_aug: bool = False


def _centre_crop_geometry(jpegs, resize: int, crop: int):
    """torchvision's Resize(resize) + CenterCrop(crop) geometry per sample, as DALI argument inputs.

    The long side is floor(resize * long / short), as torchvision computes it (DALI would round), and the crop
    offset is Python's round((size - crop) / 2), halves to even (DALI's crop_pos=0.5 would round halves up): a
    one-pixel shift of the crop would make the two backends' validation batches differ for no reason.
    """
    from nvidia.dali import fn, types
    from nvidia.dali import math as dmath

    shape = fn.peek_image_shape(jpegs, adjust_orientation=False, dtype=types.INT64)
    height, width = shape[0], shape[1]
    short = dmath.min(height, width)
    new_h = height * resize // short
    new_w = width * resize // short

    def position(size):
        spare = size - crop
        half = spare // 2
        offset = half + (spare - 2 * half) * (half - half // 2 * 2)  # round half to even
        return fn.cast(offset, dtype=types.FLOAT) / fn.cast(dmath.max(spare, 1), dtype=types.FLOAT)

    as_float = dict(dtype=types.FLOAT)
    return fn.cast(new_h, **as_float), fn.cast(new_w, **as_float), position(new_h), position(new_w)


def _build_pipeline(spec: PipelineSpec, files: list[str], labels: list[int], seed: int | None):
    from nvidia.dali import fn, pipeline_def, types

    decode_device = "mixed" if spec.gpu_decode else "cpu"
    device = "gpu" if spec.gpu_decode else "cpu"
    decoder_extra = {}
    if spec.gpu_decode:
        decoder_extra = dict(device_memory_padding=DEVICE_MEMORY_PADDING, host_memory_padding=HOST_MEMORY_PADDING,
                             hw_decoder_load=HW_DECODER_LOAD)
    random_aug = spec.train and not spec.no_aug
    conditionals = random_aug and spec.augmentation is not None

    @pipeline_def(enable_conditionals=conditionals)
    def pipeline():
        jpegs, targets = fn.readers.file(files=files, labels=labels, random_shuffle=False, pad_last_batch=True,
                                         name="reader")
        if random_aug:
            images = fn.decoders.image_random_crop(
                jpegs, device=decode_device, output_type=types.RGB, adjust_orientation=False,
                random_area=list(spec.crop_scale), random_aspect_ratio=list(spec.crop_ratio), num_attempts=10,
                **decoder_extra)
            interp = spec.interpolation
            if interp == "random":  # timm's habit: each crop picks bilinear or bicubic
                choice = fn.random.choice([int(types.INTERP_LINEAR), int(types.INTERP_CUBIC)])
                interp = fn.cast(choice, dtype=types.INTERP_TYPE)
            images = fn.resize(images, device=device, resize_x=spec.image_size, resize_y=spec.image_size,
                               interp_type=interp, antialias=True)
            if spec.vflip > 0:
                images = fn.flip(images, device=device, horizontal=0,
                                 vertical=fn.random.coin_flip(probability=spec.vflip))
            if spec.color_jitter > 0:
                lo, hi = max(0.0, 1.0 - spec.color_jitter), 1.0 + spec.color_jitter
                images = fn.color_twist(images, device=device, brightness=fn.random.uniform(range=[lo, hi]),
                                        contrast=fn.random.uniform(range=[lo, hi]),
                                        saturation=fn.random.uniform(range=[lo, hi]))
            if spec.augmentation is not None:
                images = spec.augmentation.apply(images, shape=(spec.image_size, spec.image_size),
                                                 fill_value=spec.fill_value)
            mirror = fn.random.coin_flip(probability=spec.hflip) if spec.hflip > 0 else 0
            crop = {}
        else:
            images = fn.decoders.image(jpegs, device=decode_device, output_type=types.RGB, adjust_orientation=False,
                                       **decoder_extra)
            height, width, pos_y, pos_x = _centre_crop_geometry(jpegs, spec.resize_size, spec.image_size)
            images = fn.resize(images, device=device, resize_x=width, resize_y=height,
                               interp_type=spec.interpolation, antialias=True)
            mirror = 0
            crop = dict(crop=(spec.image_size, spec.image_size), crop_pos_x=pos_x, crop_pos_y=pos_y)
        if spec.device_id is not None and not spec.gpu_decode:
            images = images.gpu()  # dali-cpu feeding a GPU: copy uint8 (4x less), normalise there
        images = fn.crop_mirror_normalize(
            images, dtype=types.FLOAT, output_layout="HWC" if spec.channels_last else "CHW",
            mean=list(spec.mean), std=list(spec.std), mirror=mirror, **crop)
        return images, targets

    with warnings.catch_warnings():
        # DALI's own auto_aug module calls operators DALI has since deprecated, and forces those warnings on
        # (simplefilter("default") around each): drop them at display, or every epoch would repeat them.
        shown = warnings.showwarning

        def show(message, category, *args, **kwargs):
            if not (issubclass(category, DeprecationWarning) and "is now deprecated" in str(message)):
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        pipe = pipeline(batch_size=spec.batch_size, num_threads=spec.num_threads, device_id=spec.device_id,
                        seed=seed, prefetch_queue_depth=spec.prefetch)
        pipe.build()
    return pipe


# --------------------------------------------------------------------------------------------------------------
# loaders


class DaliLoader:
    """One split on one rank: `len()`, iteration of `(images, targets)`, `sampler` and `skipped` as the trainer and
    the evaluator use them on every backend.

    train: `len(sampler) // batch_size` full batches (the last partial one dropped, as the pytorch backend does).
    val: every image of this rank once; the last batch is smaller (the reader pads it, the padding is cut off).
    """

    def __init__(self, dataset: ImageFolderDataset, spec: PipelineSpec, *, device: torch.device, seed: int | None,
                 rank: int, world_size: int):
        self.dataset = dataset
        self.spec = spec
        self.device = device
        self.seed = seed
        self.rank = rank
        self.batch_size = spec.batch_size
        self.sampler = ShardSampler(len(dataset), shuffle=spec.train, seed=seed or 0, rank=rank,
                                    world_size=world_size)
        self.skipped: list = []  # DALI cannot skip unreadable images: it stops (see _pipeline_error)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.spec.train else -(-n // self.batch_size)

    def _pass(self) -> tuple[list[int], int]:
        """This pass's dataset indices and its number of images."""
        indices = [i for _, i in self.sampler]
        if self.spec.train:
            indices = indices[: len(self) * self.batch_size]
        return indices, len(indices)

    def _pipeline_seed(self) -> int | None:
        if self.seed is None:
            return None  # DALI picks one (it warns on the older -1 spelling)
        if not self.spec.train:
            return self.seed % 2**31
        return sample_seed(self.seed, self.sampler.epoch, self.rank * 1_000_003 + self.sampler.start) % 2**31

    def __iter__(self):
        indices, total = self._pass()
        if total == 0:
            return
        files = [self.dataset.samples[i][0] for i in indices]
        labels = [self.dataset.samples[i][1] for i in indices]
        pipe = _build_pipeline(self.spec, files, labels, self._pipeline_seed())
        try:
            for b in range(-(-total // self.batch_size)):
                try:
                    images, targets = pipe.run()
                except RuntimeError as exc:
                    raise self._pipeline_error(exc, files, b) from None
                n = min(self.batch_size, total - b * self.batch_size)
                yield self._to_torch(pipe, images, targets, n)
        finally:
            del pipe  # shuts the pipeline's threads down, also when the pass is stopped early

    def _to_torch(self, pipe, images, targets, n: int):
        from nvidia.dali.backend import TensorGPU

        x = images.as_tensor()
        y = targets.as_tensor()
        if isinstance(x, TensorGPU):
            with torch.cuda.device(x.device_id()):
                x = _torch_tensor(pipe, x, torch.device("cuda", x.device_id()))
        else:
            x = _torch_tensor(pipe, x, torch.device("cpu"))
        y = _torch_tensor(pipe, y, torch.device("cpu")).reshape(-1).to(torch.int64)
        x, y = x[:n], y[:n]
        if self.spec.channels_last:
            x = x.permute(0, 3, 1, 2)  # NHWC memory seen as NCHW: channels_last without a copy
        if x.device != self.device:
            x = x.to(self.device, non_blocking=True)
        return x, y.to(self.device, non_blocking=True)

    def _pipeline_error(self, exc: RuntimeError, files: list[str], batch: int) -> Exception:
        """DALI's failure in reading or decoding a file as one line naming the file; anything else as it is."""
        text = str(exc)
        decoding = "decoders.image" in text or "nvImageCodec" in text
        if not decoding and "readers.file" not in text:
            return exc
        # DALI does not say which image it could not decode: decode this batch and the ones prefetched around it
        # with PIL (as the pytorch backend would) to name it.
        depth = max(self.spec.prefetch, 1) + 1
        window = files[max(batch - 1, 0) * self.batch_size : (batch + depth) * self.batch_size]
        bad = find_bad_images(window, max(self.spec.num_threads, 1))
        advice = "fix or remove it, or use --data-backend pytorch --skip-bad-images to train without it"
        if bad:
            more = f" (and {len(bad) - 1} more nearby)" if len(bad) > 1 else ""
            return UserError(f"DALI hit an undecodable image under {self.dataset.root}: {bad[0].path} "
                             f"({bad[0].reason}){more}; {advice}")
        if decoding:
            return UserError(f"DALI hit an undecodable image under {self.dataset.root}, one of {window[0]} ... "
                             f"{window[-1]} ({_dali_reason(text)}); {advice}")
        return UserError(f"DALI could not read the images under {self.dataset.root} ({_dali_reason(text)}); "
                         f"check the files, or use --data-backend pytorch")


def _torch_tensor(pipe, tensor, device: torch.device) -> torch.Tensor:
    if pipe.exec_dynamic:  # outputs are reference counted: no copy needed
        return torch.from_dlpack(tensor)
    from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type

    out = torch.empty(tensor.shape(), dtype=to_torch_type[tensor.dtype], device=device)
    stream = torch.cuda.current_stream(device) if device.type == "cuda" else None
    return feed_ndarray(tensor, out, cuda_stream=stream)


def _dali_reason(text: str) -> str:
    """The operator's own complaint, out of DALI's multi-line report."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "encountered:" in lines:
        after = lines[lines.index("encountered:") + 1 :]
        if after:
            return after[0]
    return lines[0] if lines else "unknown error"


# --------------------------------------------------------------------------------------------------------------
# the factory


def build_dali_data(cfg: DataConfig, *, gpu: bool, image_size: int, val_image_size: int, crop_pct: float, mean, std,
                    device: torch.device, memory_format: str, seed: int | None, num_classes: int | None, flag,
                    rank: int = 0, world_size: int = 1, need_train: bool = True, need_val: bool = True):
    from .bundle import check_val_classes, checked_bundle, split_folder
    from .transforms import val_resize_size

    backend = "dali-gpu" if gpu else "dali-cpu"
    import_dali(backend)
    from nvidia.dali import types

    if gpu and (device.type != "cuda" or not torch.cuda.is_available()):
        raise UserError("--data-backend dali-gpu needs a CUDA device; use dali-cpu or pytorch")
    if cfg.skip_bad_images:
        raise UserError(f"--skip-bad-images needs --data-backend pytorch: {backend} stops at an undecodable image")
    device_id = None
    if device.type == "cuda":
        device_id = device.index if device.index is not None else torch.cuda.current_device()
    root = Path(cfg.data)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist")

    spec_args = dict(
        gpu_decode=gpu, device_id=device_id, crop_scale=tuple(cfg.crop_scale), crop_ratio=tuple(cfg.crop_ratio),
        hflip=cfg.hflip, vflip=cfg.vflip,
        fill_value=int(round(255 * sum(mean) / len(mean))),
        mean=tuple(255.0 * m for m in mean), std=tuple(255.0 * s for s in std),
        channels_last=memory_format == "nhwc", num_threads=max(cfg.workers, 1), prefetch=max(cfg.prefetch, 1),
    )
    loader_args = dict(device=device, rank=rank, world_size=world_size)
    train = val = None
    classes = None
    if need_train:
        augmentation, color_jitter = None, cfg.color_jitter
        if cfg.no_aug:
            interp = _interp(types, cfg.val_interpolation or "bilinear", allow_random=False)
        else:
            interp = _interp(types, cfg.interpolation, allow_random=True)
            policy = augmentations.lookup(cfg.augmentation, augmentations.DALI)
            augmentation = policy.step(augmentations.DALI, cfg.augmentation)
            if policy.alters_colour:
                color_jitter = 0.0
        spec = PipelineSpec(train=True, image_size=image_size, resize_size=val_resize_size(image_size, crop_pct),
                            interpolation=interp, augmentation=augmentation, color_jitter=color_jitter,
                            batch_size=cfg.batch_size, no_aug=cfg.no_aug, **spec_args)
        ds = ImageFolderDataset(split_folder(root, cfg.train_split), None)
        per_rank = -(-len(ds) // world_size)
        if per_rank < cfg.batch_size:
            raise UserError(f"{ds.root} has {len(ds)} images: fewer than one batch of {cfg.batch_size} per process; "
                            f"lower {flag('batch_size')}")
        classes = ds.classes
        train = DaliLoader(ds, spec, seed=seed, **loader_args)
    if need_val:
        interp = _interp(types, cfg.val_interpolation or cfg.interpolation, allow_random=False)
        spec = PipelineSpec(train=False, image_size=val_image_size,
                            resize_size=val_resize_size(val_image_size, crop_pct), interpolation=interp,
                            augmentation=None, color_jitter=cfg.color_jitter,
                            batch_size=cfg.val_batch_size or cfg.batch_size, **spec_args)
        ds = ImageFolderDataset(split_folder(root, cfg.val_split), None)
        classes = check_val_classes(classes, ds.classes)
        val = DaliLoader(ds, spec, seed=seed, **loader_args)
    if classes is None:
        raise UserError("nothing to load: neither training nor validation data was asked for")
    return checked_bundle(root, train, val, classes, num_classes=num_classes, flag=flag)

