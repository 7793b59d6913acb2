"""The pytorch-gpu backend (nvJPEG decoding, crops on the device) honours the batch contract and matches the
pytorch backend: same classes, order, crops and flips; pixels differ only by decoder and resampler rounding."""
import io
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from common.cli_errors import UserError
from image_classification.data.gpu_decode import Planner, has_end_marker, jpeg_header
from image_classification.models.registry import IMAGENET_MEAN, IMAGENET_STD
from image_classification.training.config import TrainingConfig
from image_classification.training.run_data import build_run_data

CPU = torch.device("cpu")


def data(cfg, **kw):
    args = dict(image_size=32, val_image_size=32, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, device=CPU)
    args.update(kw)
    return build_run_data(cfg, **args)


def cfg(root, backend="pytorch-gpu", **kw):
    base = dict(data=str(root), data_backend=backend, batch_size=32, workers=0, seed=0)
    base.update(kw)
    return TrainingConfig(**base)


def epoch(loader, n=None, start=0, number=0):
    if loader.sampler is not None and hasattr(loader.sampler, "shuffle") and loader.sampler.shuffle:
        loader.sampler.set_epoch(number, start=start)
    out = []
    for batch in loader:
        out.append(batch)
        if n is not None and len(out) == n:
            break
    return out


def assert_close_batches(a, b, tol=0.02):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == xb.shape and xa.dtype == xb.dtype
        assert torch.equal(ya.cpu(), yb.cpu())
        assert (xa - xb.to(xa.device)).abs().mean().item() < tol


@pytest.fixture(scope="module")
def pytorch_val(digits_root):
    return epoch(data(cfg(digits_root, "pytorch"), need_train=False).val)


def test_batch_contract_matches_the_pytorch_backend(digits_root):
    ours = data(cfg(digits_root, memory_format="nhwc"))
    theirs = data(cfg(digits_root, "pytorch", memory_format="nhwc"))
    assert ours.num_classes == theirs.num_classes == 10 and ours.class_names == theirs.class_names
    assert len(ours.train) == 1438 // 32 and len(ours.val) == -(-359 // 32)
    for a, b in ((ours.train, theirs.train), (ours.val, theirs.val)):
        (xa, ya), (xb, yb) = next(iter(a)), next(iter(b))
        assert xa.shape == xb.shape == (32, 3, 32, 32) and xa.dtype == xb.dtype == torch.float32
        assert xa.is_contiguous(memory_format=torch.channels_last)
        assert ya.dtype == yb.dtype == torch.int64
        assert a.skipped == [] and a.sampler is not None
    # Training draws the same crops and flips as the pytorch backend (same seed, epoch and index).
    assert_close_batches(epoch(ours.train, 4, number=1), epoch(theirs.train, 4, number=1))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_val_batches_match_the_pytorch_backend(digits_root, pytorch_val, interpolation):
    ours = epoch(data(cfg(digits_root, val_interpolation=interpolation), need_train=False).val)
    theirs = pytorch_val if interpolation == "bilinear" else epoch(
        data(cfg(digits_root, "pytorch", val_interpolation=interpolation), need_train=False).val)
    assert_close_batches(ours, theirs)
    assert sum(x.shape[0] for x, _ in ours) == 359  # the last, partial batch is kept


def test_every_val_image_is_seen_once_across_ranks(digits_root):
    whole = torch.cat([x for x, _ in epoch(data(cfg(digits_root), need_train=False).val)])
    shards = [epoch(data(cfg(digits_root), need_train=False, rank=r, world_size=2).val) for r in (0, 1)]
    assert [sum(x.shape[0] for x, _ in s) for s in shards] == [180, 179]  # no padding: 359 in all
    for r, shard in enumerate(shards):
        assert torch.equal(torch.cat([x for x, _ in shard]), whole[r::2])


def test_train_crops_are_deterministic_per_epoch_and_resume_mid_epoch(digits_root):
    a = data(cfg(digits_root, interpolation="random", vflip=0.5), need_val=False).train
    b = data(cfg(digits_root, interpolation="random", vflip=0.5), need_val=False).train
    first = epoch(a, 3, number=2)
    again = epoch(b, 3, number=2)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(first, again))
    other = epoch(a, 1, number=3)
    assert not torch.equal(first[0][0], other[0][0])
    resumed = epoch(b, 2, start=32, number=2)  # set_epoch(2, start=32): where batch 1 of epoch 2 begins
    assert torch.equal(resumed[0][0], first[1][0]) and torch.equal(resumed[1][1], first[2][1])


def test_planner_draws_torchvision_crops():
    import torchvision.transforms.v2 as T

    from image_classification.data.folder import sample_seed

    planner = Planner(24, train=True, seed=5, crop_scale=(0.2, 1.0), hflip=0.5)
    rrc = T.RandomResizedCrop(24, scale=(0.2, 1.0))
    for index in range(20):
        plan = planner(50, 70, 1, index)
        torch.manual_seed(sample_seed(5, 1, index))
        params = rrc.make_params([torch.zeros(3, 50, 70)])
        assert (plan.top, plan.left, plan.height, plan.width) == tuple(params[k] for k in ("top", "left", "height",
                                                                                              "width"))
        assert plan.hflip == (torch.rand(1).item() < 0.5)
    val = Planner(224, train=False, crop_pct=0.875)(375, 500, 0, 0)
    assert val.resize == (256, 341) and (val.out_top, val.out_left) == (16, 58)


def _jpeg(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_jpeg_header_and_end_marker():
    rgb = Image.new("RGB", (40, 30), (10, 200, 30))
    baseline = _jpeg(rgb)
    header = jpeg_header(baseline)
    assert header[:4] == (0xC0, 30, 40, 3) and baseline[header.scan : header.scan + 2] == b"\xff\xda"
    assert has_end_marker(baseline, header.scan) and not has_end_marker(baseline[:-10], header.scan)
    assert jpeg_header(_jpeg(rgb, progressive=True))[:4] == (0xC2, 30, 40, 3)
    assert jpeg_header(_jpeg(rgb.convert("L")))[:4] == (0xC0, 30, 40, 1)
    assert jpeg_header(_jpeg(rgb.convert("CMYK"))).components == 4
    assert jpeg_header(baseline[: header.scan]).scan is None  # cut before the image data
    assert jpeg_header(b"") is None and jpeg_header(b"\x89PNG\r\n\x1a\n") is None and jpeg_header(b"\xff\xd8") is None


@pytest.fixture(scope="module")
def mixed_root(digits_root, tmp_path_factory):
    """A copy of the val data where some images are PNG, grey, CMYK or progressive JPEGs."""
    root = tmp_path_factory.mktemp("mixed") / "digits"
    shutil.copytree(digits_root / "val", root / "val")
    files = sorted((root / "val").glob("*/*.jpg"))
    for path in files[0:5]:
        Image.open(path).save(path.with_suffix(".png"))
        path.unlink()
    for path in files[5:10]:
        path.write_bytes(_jpeg(Image.open(path).convert("L"), quality=95))
    for path in files[10:12]:
        path.write_bytes(_jpeg(Image.open(path).convert("CMYK"), quality=95))
    for path in files[12:15]:
        path.write_bytes(_jpeg(Image.open(path), quality=95, progressive=True))
    return root


def test_png_grey_and_cmyk_images_are_decoded_on_the_cpu(mixed_root):
    ours = epoch(data(cfg(mixed_root), need_train=False).val)
    theirs = epoch(data(cfg(mixed_root, "pytorch"), need_train=False).val)
    assert sum(x.shape[0] for x, _ in ours) == 359 and all(x.shape[1] == 3 for x, _ in ours)
    assert_close_batches(ours, theirs)


def test_corrupt_images_stop_the_run_with_one_line(corrupt_root):
    bundle = data(cfg(corrupt_root, batch_size=64), need_val=False)
    with pytest.raises(UserError) as exc:
        for _ in bundle.train:
            pass
    message = str(exc.value)
    assert "\n" not in message and "3 of 1441 images" in message
    assert "empty.jpg" in message and "garbage.jpg" in message and "truncated.jpg" in message
    assert "--skip-bad-images" in message


def test_corrupt_images_can_be_skipped_and_are_recorded(corrupt_root):
    bundle = data(cfg(corrupt_root, batch_size=64, skip_bad_images=True, workers=2), need_val=False)
    seen = sum(images.shape[0] for images, _ in bundle.train)
    assert {Path(b.path).name for b in bundle.train.skipped} == {"empty.jpg", "garbage.jpg", "truncated.jpg"}
    assert seen == (1441 // 64) * 64 - 3


def test_unsupported_options_are_refused_in_one_line(digits_root):
    for kw in (dict(augmentation="autoaugment"), dict(augmentation="rand-m9-mstd0.5"), dict(color_jitter=0.4)):
        with pytest.raises(UserError) as exc:
            data(cfg(digits_root, **kw))
        assert "\n" not in str(exc.value) and "--data-backend pytorch" in str(exc.value)
    assert "dali-gpu" in str(pytest.raises(UserError, data, cfg(digits_root, augmentation="autoaugment")).value)
    # Validation alone, or --no-aug, does not augment: nothing to refuse.
    data(cfg(digits_root, augmentation="autoaugment"), need_train=False)
    with pytest.raises(UserError, match="interpolation 'lanczos' is not available"):
        data(cfg(digits_root, interpolation="lanczos"))


def test_folder_errors_match_the_pytorch_backend(tmp_path, digits_root):
    root = tmp_path / "d"
    shutil.copytree(digits_root, root)
    shutil.rmtree(root / "val" / "9")
    (tmp_path / "empty").mkdir()
    cases = [(tmp_path / "nope", {}), (tmp_path / "empty", {}), (digits_root, dict(num_classes=1000)),
             (digits_root, dict(batch_size=5000)), (root, {})]
    for path, kw in cases:
        messages = []
        for backend in ("pytorch", "pytorch-gpu"):
            with pytest.raises(UserError) as exc:
                data(cfg(path, backend, **kw))
            messages.append(str(exc.value))
        assert messages[0] == messages[1]


def test_main_trains_with_the_pytorch_gpu_backend(digits_root, tmp_path):
    from tests.image_classification.training.helpers import run

    summary = run(digits_root, tmp_path, "--data-backend", "pytorch-gpu", "--epochs", 1, "--prof", 3, "-j", 0,
                  "--cpu")
    assert summary["epochs_done"] == 1
    assert math.isfinite(summary["metrics"]["train.loss"]) and math.isfinite(summary["metrics"]["val.loss"])
    assert (tmp_path / "checkpoint.pth.tar").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nvjpeg_path_matches_the_cpu_path(digits_root, mixed_root):
    cuda = torch.device("cuda")
    for root in (digits_root, mixed_root):
        gpu = data(cfg(root, memory_format="nhwc"), device=cuda, need_train=root == digits_root)
        cpu = data(cfg(root, memory_format="nhwc"), need_train=root == digits_root)
        val = epoch(gpu.val)
        assert all(x.is_cuda and y.is_cuda and x.is_contiguous(memory_format=torch.channels_last) for x, y in val)
        assert_close_batches(val, epoch(cpu.val), tol=0.02)
        if gpu.train is not None:
            assert_close_batches(epoch(gpu.train, 5, number=1), epoch(cpu.train, 5, number=1), tol=0.02)
