"""--data-backend dali-cpu honours the pytorch backend's contract: same classes, order, batches and errors."""
import shutil
from collections import Counter

import pytest
import torch

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda130)")

from common.cli_errors import UserError  # noqa: E402
from image_classification.data.augment_dali import AutoAugmentSpec, RandAugmentSpec  # noqa: E402
from image_classification.data.augmentations import DALI, build  # noqa: E402
from image_classification.models.registry import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from image_classification.training.config import TrainingConfig  # noqa: E402
from image_classification.training.run_data import build_run_data  # noqa: E402
from tests.conftest import assert_one_line_error, run_script  # noqa: E402

CPU = torch.device("cpu")
LO = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
HI = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))


def data(cfg, **kw):
    args = dict(image_size=32, val_image_size=32, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, device=CPU)
    args.update(kw)
    return build_run_data(cfg, **args)


def cfg(root, backend="dali-cpu", **kw):
    base = dict(data=str(root), data_backend=backend, batch_size=16, workers=2, seed=0)
    base.update(kw)
    return TrainingConfig(**base)


def expected_targets(loader):
    """The pytorch backend's targets for its sampler's current pass, without decoding anything."""
    return [loader.dataset.targets[i] for _, i in loader.loader.sampler]


def check_batch(images, targets, n=16, size=32, channels_last=False):
    assert images.dtype == torch.float32 and images.shape == (n, 3, size, size) and images.device == CPU
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert images.is_contiguous(memory_format=layout)
    assert torch.isfinite(images).all()
    assert LO - 1e-3 <= images.min() and images.max() <= HI + 1e-3
    assert targets.dtype == torch.int64 and targets.shape == (n,) and targets.min() >= 0 and targets.max() < 10


@pytest.fixture(scope="module")
def pytorch_val(digits_root):
    bundle = data(cfg(digits_root, "pytorch"), need_train=False)
    return bundle, list(bundle.val)


def test_batch_contract_matches_the_pytorch_backend(digits_root, pytorch_val):
    reference, _ = pytorch_val
    for memory_format in ("nhwc", "nchw"):
        bundle = data(cfg(digits_root, memory_format=memory_format))
        assert bundle.num_classes == reference.num_classes == 10
        assert bundle.class_names == reference.class_names == [str(i) for i in range(10)]
        assert len(bundle.train) == 1438 // 16 and len(bundle.val) == -(-359 // 16)
        assert bundle.train.skipped == [] and bundle.val.skipped == []
        for loader in (bundle.train, bundle.val):
            images, targets = next(iter(loader))
            check_batch(images, targets, channels_last=memory_format == "nhwc")


def test_validation_sees_every_image_once_in_the_pytorch_order_and_values(digits_root, pytorch_val):
    _, expected = pytorch_val
    batches = list(data(cfg(digits_root, memory_format="nhwc"), need_train=False).val)
    assert [x.shape[0] for x, _ in batches] == [x.shape[0] for x, _ in expected]
    assert batches[-1][0].shape[0] == 359 % 16  # the last batch is partial: no padding, no duplicates
    ours = torch.cat([x for x, _ in batches])
    theirs = torch.cat([x for x, _ in expected])
    assert torch.equal(torch.cat([y for _, y in batches]), torch.cat([y for _, y in expected]))
    assert ours.shape == theirs.shape == (359, 3, 32, 32)
    # Different JPEG decoders and resize kernels, same geometry (torchvision's resize and centre crop).
    assert (ours - theirs).abs().mean() < 0.05
    a, b = ours.flatten(1), theirs.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    correlation = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert correlation.min() > 0.98


def test_validation_geometry_matches_torchvision_on_odd_shapes(tmp_path):
    """Non-square images: torchvision floors the long side and rounds the centre-crop offset half to even."""
    import numpy as np
    from PIL import Image

    sizes = [(50, 37), (37, 50), (41, 64), (100, 77), (33, 33), (59, 90)]
    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                y, x = np.mgrid[0:h, 0:w]
                rgb = np.stack([127 + 120 * np.sin(x / 7 + i), 127 + 120 * np.cos(y / 5 + i),
                                127 + 100 * np.sin((x + y) / 9)], -1)
                Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=95)
    kw = dict(image_size=24, val_image_size=24, need_train=False)
    ours = torch.cat([x for x, _ in data(cfg(tmp_path, batch_size=4, interpolation="bicubic"), **kw).val])
    theirs = torch.cat([x for x, _ in data(cfg(tmp_path, "pytorch", batch_size=4, interpolation="bicubic"), **kw).val])
    assert (ours - theirs).abs().flatten(1).mean(1).max() < 0.02  # per image, all aspect ratios


def test_training_order_is_the_pytorch_backends_and_resumes_mid_epoch(digits_root):
    reference = data(cfg(digits_root, "pytorch"), need_val=False).train
    train = data(cfg(digits_root), need_val=False).train
    for epoch in (0, 1):
        reference.sampler.set_epoch(epoch)
        train.sampler.set_epoch(epoch)
        batches = list(train)
        assert len(batches) == len(train) == 1438 // 16
        targets = torch.cat([y for _, y in batches]).tolist()
        assert targets == expected_targets(reference)[: len(targets)]
        for images, y in batches[:3]:
            check_batch(images, y)
    # Resume in the middle of epoch 1: the rest of the same order, and the right number of steps.
    train.sampler.set_epoch(1, start=80 * 16)
    resumed = list(train)
    assert len(resumed) == len(train) == 1438 // 16 - 80
    assert torch.cat([y for _, y in resumed]).tolist() == targets[80 * 16 :]
    # A pass stopped early (as --prof does) leaves the next pass whole.
    train.sampler.set_epoch(2)
    for i, _ in enumerate(train):
        if i == 2:
            break
    assert sum(1 for _ in train) == 1438 // 16


def test_two_ranks_share_validation_exactly_once(digits_root, pytorch_val):
    _, expected = pytorch_val
    whole = torch.cat([x for x, _ in data(cfg(digits_root), need_train=False).val])
    seen = Counter()
    for rank in (0, 1):
        bundle = data(cfg(digits_root), rank=rank, world_size=2)
        assert len(bundle.train) == -(-1438 // 2) // 16  # both ranks take the same number of steps
        batches = list(bundle.val)
        images = torch.cat([x for x, _ in batches])
        assert len(bundle.val) == len(batches) and images.shape[0] == len(range(rank, 359, 2))
        assert torch.equal(images, whole[rank::2])  # this rank's share, each image once
        seen.update(torch.cat([y for _, y in batches]).tolist())
    assert sum(seen.values()) == 359
    assert seen == Counter(torch.cat([y for _, y in expected]).tolist())


@pytest.mark.parametrize("augmentation,interpolation", [("autoaugment", "random"), ("rand-m9-mstd0.5", "bicubic")])
def test_augmentation_policies_give_valid_batches(digits_root, augmentation, interpolation):
    plain = data(cfg(digits_root), need_val=False).train
    train = data(cfg(digits_root, augmentation=augmentation, interpolation=interpolation, hflip=0.5, vflip=0.2,
                     batch_size=32), need_val=False).train
    images, targets = next(iter(train))
    check_batch(images, targets, n=32)
    assert targets[:16].tolist() == next(iter(plain))[1].tolist()  # same order, whatever the augmentation
    assert len(train) == 1438 // 32


def parse_augmentation(name):
    return build(name, DALI)  # what --augmentation becomes on the DALI backends


def test_augmentation_specs():
    assert parse_augmentation(None) is None and parse_augmentation("none") is None
    assert isinstance(parse_augmentation("autoaugment"), AutoAugmentSpec)
    tv = parse_augmentation("randaugment")
    assert (tv.n, tv.m, tv.num_magnitude_bins, tv.monotonic_mag) == (2, 9, 31, True)  # torchvision's defaults
    timm = parse_augmentation("rand-m9-mstd0.5")
    assert isinstance(timm, RandAugmentSpec)
    assert (timm.n, timm.m / (timm.num_magnitude_bins - 1), timm.monotonic_mag) == (2, 0.9, False)
    spec = parse_augmentation("rand-m7-n3-inc1")
    assert (spec.n, spec.m / (spec.num_magnitude_bins - 1), spec.monotonic_mag) == (3, 0.7, True)
    for bad, message in (("rand-q3", "bad augmentation spec"), ("rand-mX", "bad augmentation spec"),
                         ("augmix-m5-w3", "not available with DALI"), ("cutout", "unknown augmentation")):
        with pytest.raises(UserError, match=message):
            parse_augmentation(bad)


def test_bad_settings_and_folders_fail_clearly(tmp_path, digits_root):
    with pytest.raises(UserError, match="unknown augmentation 'cutout'"):
        data(cfg(digits_root, augmentation="cutout"))
    with pytest.raises(UserError, match="interpolation 'lanczos' is not available"):
        data(cfg(digits_root, interpolation="lanczos"))
    with pytest.raises(UserError, match="does not exist"):
        data(cfg(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="train not found"):
        data(cfg(tmp_path / "empty"))
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "val" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no images"):
        data(cfg(tmp_path / "empty"))
    with pytest.raises(UserError, match="fewer than one batch"):
        data(cfg(digits_root, batch_size=5000))
    with pytest.raises(UserError, match="has 10 classes but --num_classes is 1000"):
        data(cfg(digits_root, num_classes=1000))
    with pytest.raises(UserError, match="--skip-bad-images needs --data-backend pytorch"):
        data(cfg(digits_root, skip_bad_images=True))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="dali-gpu needs a CUDA device"):
            data(cfg(digits_root, "dali-gpu"))


def test_undecodable_image_is_one_line_naming_it(tmp_path, digits_root):
    root = tmp_path / "d"
    shutil.copytree(digits_root / "val", root / "val")
    victim = sorted((root / "val" / "3").iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated mid-scan
    bundle = data(cfg(root), need_train=False)
    with pytest.raises(UserError) as exc:
        for _ in bundle.val:
            pass
    message = str(exc.value)
    assert "\n" not in message and message.startswith("DALI hit an undecodable image")
    assert str(victim) in message and "--data-backend pytorch --skip-bad-images" in message


def test_missing_dali_is_one_line(digits_root, tmp_path):
    code = ("import runpy, sys; sys.modules['nvidia.dali'] = None; sys.argv[0] = 'efficientnet/main.py'; "
            "runpy.run_path('efficientnet/main.py', run_name='__main__')")
    proc = run_script("-c", code, digits_root, "--workspace", tmp_path, "--data-backend", "dali-cpu", "--cpu",
                      timeout=120)
    assert_one_line_error(proc, "--data-backend dali-cpu needs NVIDIA DALI", "pip install nvidia-dali-cuda130")


def test_trains_an_epoch_end_to_end(digits_root, tmp_path):
    from tests.image_classification.training.helpers import load, run

    summary = run(digits_root, tmp_path, "--data-backend", "dali-cpu", "--prof", 3, "--epochs", 1, "-j", 2, "--cpu")
    assert summary["epochs_done"] == 1 and summary["num_classes"] == 10
    assert summary["val"]["images"] == 3 * 16  # --prof 3: three validation batches of -b 16
    checkpoint = load(tmp_path / "checkpoint.pth.tar")
    assert checkpoint["class_names"] == [str(i) for i in range(10)] and checkpoint["epoch"] == 1
    assert all(torch.isfinite(v.float()).all() for v in checkpoint["state_dict"].values())


def test_triangular_interpolation_is_dalis(digits_root, pytorch_val):
    """Upstream's DALI-only --interpolation triangular works on DALI and is refused, in one line, elsewhere."""
    bundle = data(cfg(digits_root, interpolation="triangular"))
    images, targets = next(iter(bundle.train))
    check_batch(images, targets)
    val_images, _ = next(iter(bundle.val))
    assert (val_images - pytorch_val[1][0][0]).abs().mean() < 0.1
    with pytest.raises(UserError, match="triangular is DALI's"):
        data(cfg(digits_root, "pytorch", interpolation="triangular"))
