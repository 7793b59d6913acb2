"""The pytorch and synthetic backends honour one batch contract; bad folders and images fail clearly."""
import shutil
from pathlib import Path

import pytest
import torch

from common.cli_errors import UserError
from image_classification.data.folder import ImageFolderDataset
from image_classification.data.samplers import ShardSampler
from image_classification.data.transforms import train_transform, val_resize_size, val_transform
from image_classification.models.registry import IMAGENET_MEAN, IMAGENET_STD
from image_classification.training.config import TrainingConfig
from image_classification.training.run_data import build_run_data

CPU = torch.device("cpu")


def data(cfg, **kw):
    args = dict(image_size=32, val_image_size=32, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, device=CPU)
    args.update(kw)
    return build_run_data(cfg, **args)


def cfg(root, **kw):
    base = dict(data=str(root), batch_size=16, workers=0, seed=0)
    base.update(kw)
    return TrainingConfig(**base)


def test_batch_contract(digits_root):
    bundle = data(cfg(digits_root, memory_format="nhwc"))
    assert bundle.num_classes == 10 and bundle.class_names == [str(i) for i in range(10)]
    for loader in (bundle.train, bundle.val):
        images, targets = next(iter(loader))
        assert images.dtype == torch.float32 and images.shape == (16, 3, 32, 32)
        assert images.is_contiguous(memory_format=torch.channels_last)
        assert targets.dtype == torch.int64 and targets.min() >= 0 and targets.max() < 10
        # Normalised with ImageNet mean/std on the device: black digits' background sits near -mean/std.
        lo = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        hi = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        assert lo - 1e-4 <= images.min() and images.max() <= hi + 1e-4
    assert len(bundle.train) == 1438 // 16  # drop_last for training
    assert len(bundle.val) == -(-359 // 16)  # every val image, last batch partial


def test_synthetic_backend_ends_and_has_real_targets():
    bundle = data(TrainingConfig(data_backend="synthetic", batch_size=4, prof=3, num_classes=7))
    batches = list(bundle.train)
    assert len(batches) == 3 and bundle.num_classes == 7
    images, targets = batches[0]
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert targets.dtype == torch.int64 and 0 <= targets.min() and targets.max() < 7


def test_validation_is_not_shuffled_and_sharded_without_duplicates():
    plain = list(ShardSampler(11, shuffle=False))
    assert [i for _, i in plain] == list(range(11))
    shards = [[i for _, i in ShardSampler(11, shuffle=False, rank=r, world_size=3)] for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))  # each image once, no padding
    train = [[i for _, i in ShardSampler(11, shuffle=True, rank=r, world_size=3, seed=1)] for r in range(3)]
    assert len({len(s) for s in train}) == 1  # equal step counts for DDP
    assert set(sum(train, [])) == set(range(11))


def test_train_order_depends_on_epoch_and_can_start_mid_epoch():
    s = ShardSampler(20, shuffle=True, seed=5)
    s.set_epoch(0)
    e0 = [i for _, i in s]
    s.set_epoch(1)
    e1 = [i for _, i in s]
    assert e0 != e1 and sorted(e0) == list(range(20))
    s.set_epoch(1, start=7)
    assert [i for _, i in s] == e1[7:] and len(s) == 13


def test_augmentation_depends_only_on_seed_epoch_and_index(digits_root):
    tf = train_transform(32, crop_scale=(0.3, 1.0), augmentation="rand-m9-mstd0.5")
    a = ImageFolderDataset(digits_root / "train", tf, seed=7)
    b = ImageFolderDataset(digits_root / "train", tf, seed=7)
    torch.manual_seed(123)
    x = a[(3, 10)][0]
    torch.manual_seed(456)
    assert torch.equal(x, b[(3, 10)][0])
    assert not torch.equal(x, a[(4, 10)][0])
    # The main process's RNG is left as it was (so -j 0 and -j N train identically).
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    a[(0, 1)]
    assert torch.equal(torch.rand(1), expected)


@pytest.mark.parametrize("augmentation", ["autoaugment", "randaugment", "rand-m9-mstd0.5", "augmix-m5-w3"])
def test_augmentations_produce_uint8_images(digits_root, augmentation):
    ds = ImageFolderDataset(digits_root / "train", train_transform(40, augmentation=augmentation), seed=0)
    image, target = ds[(0, 5)]
    assert image.dtype == torch.uint8 and image.shape == (3, 40, 40) and target == 0


def test_unknown_augmentation_is_a_user_error():
    with pytest.raises(UserError, match="unknown augmentation"):
        train_transform(32, augmentation="cutout")


def test_val_resize_follows_crop_pct():
    assert val_resize_size(224, 0.875) == 256
    assert val_resize_size(380, 380 / 412) == 412  # upstream's size + 32 for B4
    image = val_transform(50, crop_pct=0.5)(__import__("PIL.Image").Image.new("RGB", (300, 200)))
    assert image.shape == (3, 50, 50)
    with pytest.raises(UserError):
        val_resize_size(224, 1.5)


def test_missing_or_empty_folders_fail_clearly(tmp_path, digits_root):
    with pytest.raises(UserError, match="does not exist"):
        data(cfg(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"train not found"):
        data(cfg(tmp_path / "empty"))
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "val" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no images"):
        data(cfg(tmp_path / "empty"))


def test_class_mismatches_fail_clearly(tmp_path, digits_root):
    with pytest.raises(UserError, match="has 10 classes but --num_classes is 1000"):
        data(cfg(digits_root, num_classes=1000))
    root = tmp_path / "d"
    shutil.copytree(digits_root, root)
    shutil.rmtree(root / "val" / "9")
    with pytest.raises(UserError, match="class folders differ"):
        data(cfg(root))


def test_batch_larger_than_data_is_refused(digits_root):
    with pytest.raises(UserError, match="fewer than one batch"):
        data(cfg(digits_root, batch_size=5000))


def test_corrupt_images_stop_the_run_with_a_full_report(corrupt_root):
    bundle = data(cfg(corrupt_root, batch_size=64))
    with pytest.raises(UserError) as exc:
        for _ in bundle.train:
            pass
    message = str(exc.value)
    assert "\n" not in message
    assert "3 of 1441 images" in message
    assert "empty.jpg" in message and "garbage.jpg" in message and "truncated.jpg" in message
    assert "--skip-bad-images" in message


def test_corrupt_images_can_be_skipped_and_are_counted(corrupt_root):
    bundle = data(cfg(corrupt_root, batch_size=64, skip_bad_images=True, workers=2))
    seen = sum(images.shape[0] for images, _ in bundle.train)
    assert len(bundle.train.skipped) == 3
    assert {Path(b.path).name for b in bundle.train.skipped} == {"empty.jpg", "garbage.jpg", "truncated.jpg"}
    assert seen == (1441 // 64) * 64 - 3


def test_topk_above_the_class_count_is_warned(digits_root, capsys):
    capsys.readouterr()
    data(cfg(digits_root, topk=20), need_train=False)
    assert capsys.readouterr().err.strip() == (f"warning: --topk 20 is more than the 10 classes in {digits_root}: "
                                               f"every image will count as a top-20 hit")
    data(cfg(digits_root, topk=10), need_train=False)
    assert capsys.readouterr().err == ""


def small_folder(root: Path, classes=("a", "b"), per_class=2) -> Path:
    from PIL import Image

    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / cls / f"{i}.jpg")
    return root


def test_a_symlink_to_an_enclosing_folder_is_refused(tmp_path):
    root = small_folder(tmp_path / "train")
    (root / "a" / "again").symlink_to(root / "a")
    with pytest.raises(UserError, match=r"a/again points to .*/a, a folder it is already inside"):
        ImageFolderDataset(root, None)


def test_a_loop_through_two_links_is_refused(tmp_path):
    root = small_folder(tmp_path / "train")
    (root / "a" / "x").mkdir()
    (root / "a" / "y").mkdir()
    (root / "a" / "x" / "to-y").symlink_to(root / "a" / "y")
    (root / "a" / "y" / "to-x").symlink_to(root / "a" / "x")
    with pytest.raises(UserError, match="symbolic link loop"):
        ImageFolderDataset(root, None)


def test_a_symlink_to_a_folder_elsewhere_is_still_followed(tmp_path):
    root = small_folder(tmp_path / "train")
    extra = small_folder(tmp_path / "extra", classes=("more",), per_class=3)
    (root / "b" / "more").symlink_to(extra / "more")
    ds = ImageFolderDataset(root, None)
    assert ds.targets == [0, 0, 1, 1, 1, 1, 1]
    assert [Path(p).relative_to(root).as_posix() for p, _ in ds.samples][2:] == [
        "b/0.jpg", "b/1.jpg", "b/more/0.jpg", "b/more/1.jpg", "b/more/2.jpg"]


def test_an_empty_class_folder_is_named(tmp_path):
    root = small_folder(tmp_path / "train")
    (root / "c").mkdir()
    with pytest.raises(UserError, match=r"class folder .*/train/c holds no images"):
        ImageFolderDataset(root, None)
