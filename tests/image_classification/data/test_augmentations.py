"""The augmentation registry: every policy says what each backend does for it, the backends build what it says, and
a policy a backend cannot run gets that backend's one-line refusal."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode

from common.cli_errors import UserError
from image_classification.data import augmentations
from image_classification.data.augmentations import BACKENDS, DALI, NOT_SUPPORTED, NVJPEG, POLICIES, PYTORCH, Policy
from image_classification.data.batch_augmentations import build_batch_augmentations
from image_classification.data.transforms import train_transform
from image_classification.models.registry import IMAGENET_MEAN, IMAGENET_STD
from image_classification.training.config import TrainingConfig
from image_classification.training.run_data import build_run_data

# A name for each family of policies (a name ending in "-" takes a timm spec after it).
FAMILY_EXAMPLES = {"rand-": "rand-m9-mstd0.5", "augmix-": "augmix-m5-w3"}
CONTEXT = {PYTORCH: dict(image_size=32, interpolation=InterpolationMode.BILINEAR, fill=[124, 116, 104]),
           DALI: {}, NVJPEG: {}}


def example(policy: Policy) -> str:
    if policy.name.endswith("-"):
        assert policy.name in FAMILY_EXAMPLES, f"give the family {policy.name!r} an example name in FAMILY_EXAMPLES"
        return FAMILY_EXAMPLES[policy.name]
    return policy.name


def test_every_policy_says_what_every_backend_does():
    assert [p.name for p in POLICIES][0] == "none"
    assert len({p.name for p in POLICIES}) == len(POLICIES)
    image = Image.new("RGB", (32, 32), (200, 30, 90))
    for policy in POLICIES:
        name = example(policy)
        assert augmentations.lookup(name, PYTORCH) is policy
        for backend in BACKENDS:
            build = getattr(policy, backend.field)
            assert build is NOT_SUPPORTED or callable(build), (policy.name, backend.field)
            if build is NOT_SUPPORTED:
                with pytest.raises(UserError) as info:
                    augmentations.build(name, backend, **CONTEXT[backend])
                message = str(info.value)
                assert "\n" not in message and repr(name) in message and "not available" in message
                continue
            step = augmentations.build(name, backend, **CONTEXT[backend])
            if policy.name == "none" or backend is NVJPEG:
                assert step is None  # nothing to add: the crops and flips alone
            elif backend is PYTORCH:
                assert step(image).size == image.size
            else:
                assert callable(step.apply)


def test_no_policy_has_every_spelling_and_runs_everywhere():
    for spelling in (None, "", "none", "None"):
        assert augmentations.lookup(spelling, NVJPEG).name == "none"
    none = augmentations.lookup(None, PYTORCH)
    assert not none.alters_colour and all(none.runs_on(b) for b in BACKENDS)
    assert all(p.alters_colour for p in POLICIES if p is not none)


def test_unknown_names_get_each_backends_line():
    for backend, fragment in ((PYTORCH, "unknown augmentation 'cutout'; choose from: none, autoaugment"),
                              (DALI, "unknown augmentation 'cutout'; with DALI choose from: none, autoaugment"),
                              (NVJPEG, "unknown augmentation 'cutout'; with --data-backend pytorch-gpu choose "
                                       "from: none")):
        with pytest.raises(UserError) as info:
            augmentations.lookup("cutout", backend)
        assert str(info.value).startswith(fragment) and "\n" not in str(info.value)
    assert "augmix" in augmentations.choices(PYTORCH) and "augmix" not in augmentations.choices(DALI)


def test_refusals_name_the_backends_that_run_the_policy():
    with pytest.raises(UserError) as info:
        augmentations.build("augmix-m5-w3", DALI)
    assert str(info.value) == ("augmentation 'augmix-m5-w3' is not available with DALI; use --data-backend pytorch, "
                               "or one of: " + augmentations.choices(DALI))
    dali_only = Policy("dali-only", "dali-only", alters_colour=True, pytorch=NOT_SUPPORTED,
                       dali=augmentations.nothing_to_add, nvjpeg=NOT_SUPPORTED)
    with pytest.raises(UserError, match="use --data-backend dali-gpu for it"):
        dali_only.step(PYTORCH, "dali-only")
    for policy, backends in (("autoaugment", "pytorch or dali-gpu"), ("augmix-m5-w3", "pytorch")):
        with pytest.raises(UserError, match=f"use --data-backend {backends} for it$"):
            augmentations.build(policy, NVJPEG)


# --- a new policy is one entry: the backends pick it up -----------------------------------------------------------


class Marker:
    """A recognisable pytorch step."""

    def __call__(self, image):
        return image


@pytest.fixture
def new_policy(monkeypatch):
    marker = Marker()
    policy = Policy("marker", "marker", alters_colour=False, pytorch=lambda name, **context: marker,
                    dali=NOT_SUPPORTED, nvjpeg=NOT_SUPPORTED)
    monkeypatch.setattr(augmentations, "POLICIES", POLICIES + (policy,))
    return marker


def config(root, backend, **kw):
    return TrainingConfig(data=str(root), data_backend=backend, batch_size=16, workers=0, seed=0, **kw)


def data(cfg):
    return build_run_data(cfg, image_size=32, val_image_size=32, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          device=torch.device("cpu"), need_val=False)


def test_the_pytorch_backend_runs_a_new_policy(new_policy, digits_root):
    steps = train_transform(32, augmentation="marker", color_jitter=0.4).transforms
    assert new_policy in steps
    assert any(type(s).__name__ == "ColorJitter" for s in steps)  # it does not alter colour, so jitter stays
    images, _ = next(iter(data(config(digits_root, "pytorch", augmentation="marker")).train))
    assert images.shape == (16, 3, 32, 32)


def test_the_other_backends_refuse_a_new_policy_in_one_line(new_policy, digits_root):
    with pytest.raises(UserError) as info:
        data(config(digits_root, "pytorch-gpu", augmentation="marker"))
    assert str(info.value) == ("augmentation 'marker' is not available on --data-backend pytorch-gpu; use "
                               "--data-backend pytorch for it")  # not dali-gpu, which cannot run it either
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed")
    with pytest.raises(UserError, match="'marker' is not available with DALI; use --data-backend pytorch,"):
        data(config(digits_root, "dali-cpu", augmentation="marker"))


# --- batch augmentations, run by the trainer after any backend ----------------------------------------------------


def test_batch_augmentations_are_built_as_asked_in_order():
    cpu = torch.device("cpu")
    assert build_batch_augmentations(TrainingConfig(), 10, cpu) == []
    ops = build_batch_augmentations(TrainingConfig(random_erasing=1.0, mixup=0.2, batch_size=4), 10, cpu)
    assert [type(op).__name__ for op in ops] == ["RandomErasing", "Mixup"]
    assert [op.soft_targets for op in ops] == [False, True]
    images, targets = torch.ones(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    erased, same = ops[0](images.clone(), targets, epoch=0)
    assert torch.equal(same, targets) and not torch.equal(erased, images)
    _, soft = ops[1](images.clone(), targets, epoch=0)
    assert soft.shape == (4, 10) and torch.allclose(soft.sum(dim=1), torch.ones(4))
    with pytest.raises(UserError, match="--batch-size must be even"):
        build_batch_augmentations(TrainingConfig(cutmix=1.0, batch_size=3), 10, cpu)


def test_mixup_stops_mixing_images_from_its_off_epoch():
    (mixup,) = build_batch_augmentations(TrainingConfig(mixup=1.0, mixup_off_epoch=2, batch_size=4), 4, "cpu")
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    targets = torch.arange(4)
    late, soft = mixup(images.clone(), targets, epoch=2)
    assert torch.equal(late, images) and soft.shape == (4, 4)
    early, _ = mixup(images.clone(), targets, epoch=1)
    assert not torch.equal(early, images)


def _help_of(parser, flag: str) -> str:
    return next(a.help for a in parser._actions if flag in a.option_strings)


def test_both_dialects_help_lists_every_policy_a_new_one_included(new_policy):
    from efficientnet.main import build_parser as convnets_parser
    from gpunet.train import build_parser as timm_parser

    for parser, flag in ((convnets_parser(), "--augmentation"), (timm_parser(), "--aa")):
        text = _help_of(parser, flag)
        for policy in POLICIES + (Policy("marker", "marker", alters_colour=False, pytorch=None, dali=None,
                                         nvjpeg=None),):
            assert policy.spelling in text, (flag, policy.spelling, text)


def test_the_registry_and_the_help_import_no_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\n"
            "from efficientnet.main import build_parser\n"
            "build_parser().format_help()\n"
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3], capture_output=True,
                          text=True, timeout=300)
    assert (proc.returncode, proc.stdout.strip()) == (0, "[]"), proc.stderr[-2000:]
