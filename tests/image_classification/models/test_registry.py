"""Model registry and EfficientNet architecture: names, metadata, shapes, gradients, NGC key layout."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common.cli_errors import UserError
from image_classification.models import create_model, get_model_info, list_models
from image_classification.models.layers import StochasticDepthResidual
from image_classification.models.registry import IMAGENET_MEAN, IMAGENET_STD

NGC_KEYS = Path(__file__).resolve().parents[3].parent / "shared/reference/ngc-keys"
VARIANTS = [f"b{i}" for i in range(8)]
EXPECTED_NAMES = [f"efficientnet-{v}" for v in VARIANTS] + [f"efficientnet-widese-{v}" for v in VARIANTS]
PARAM_COUNTS = {
    "efficientnet-b0": 5_288_548,
    "efficientnet-widese-b0": 8_423_848,
    "efficientnet-b4": 19_341_616,
    "efficientnet-widese-b4": 34_927_246,
}


@pytest.fixture(scope="module")
def imagenet_models():
    """The four published architectures at 1000 classes, built once for the count and key tests."""
    torch.manual_seed(0)
    return {name: create_model(name) for name in PARAM_COUNTS}


# --- every registered model -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_roundtrip_and_other_resolution(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, survival_prob=1.0)
    x = torch.randn(2, 3, 32, 32)

    model.train()
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params
    no_grad = [n for n, p in params if p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"
    not_finite = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not not_finite, f"parameters with non-finite gradients: {not_finite[:5]}"
    assert sum(p.grad.abs().sum() for _, p in params) > 0

    # The training step moved BN statistics, so the round trip covers buffers as well as parameters.
    model.eval()
    fresh = create_model(name, num_classes=7, survival_prob=1.0).eval()
    with torch.no_grad():
        expected = model(x)
        assert not torch.equal(fresh(x), expected), "a fresh model should not already match"
        fresh.load_state_dict(model.state_dict())
        assert torch.equal(fresh(x), expected)
        assert model(torch.randn(2, 3, 72, 72)).shape == (2, 7)


# --- names --------------------------------------------------------------------------------------------


def test_all_efficientnet_names_listed():
    names = list_models()
    missing = [n for n in EXPECTED_NAMES if n not in names]
    assert not missing
    assert list_models("efficientnet-widese-*") == sorted(n for n in EXPECTED_NAMES if "widese" in n)


@pytest.mark.parametrize(
    "spelling, canonical",
    [
        ("efficientnet_b0", "efficientnet-b0"),
        ("efficientnet_widese_b4", "efficientnet-widese-b4"),
        ("EFFICIENTNET-B0", "efficientnet-b0"),
        ("EfficientNet_WideSE_B7", "efficientnet-widese-b7"),
        ("efficientnet-b3", "efficientnet-b3"),
        ("efficientnet_widese-b4", "efficientnet-widese-b4"),
        (" efficientnet-b2 ", "efficientnet-b2"),
    ],
)
def test_aliases_resolve_to_canonical_name(spelling, canonical):
    assert get_model_info(spelling).name == canonical


def test_created_alias_reports_canonical_architecture():
    model = create_model("EFFICIENTNET_B0", num_classes=7)
    assert model.pretrained_cfg["architecture"] == "efficientnet-b0"


@pytest.mark.parametrize(
    "typo, suggestion",
    [
        ("efficentnet-b0", "efficientnet-b0"),
        ("efficientnet_b0x", "efficientnet-b0"),
        ("efficientnet-wide-b4", "efficientnet-widese-b4"),
        ("EfficientNet-B44", "efficientnet-b4"),
    ],
)
def test_unknown_name_suggests_close_names(typo, suggestion):
    with pytest.raises(UserError) as err:
        get_model_info(typo)
    msg = str(err.value)
    assert typo in msg
    assert "did you mean" in msg
    assert suggestion in msg
    assert "\n" not in msg


def test_unknown_name_from_create_model():
    with pytest.raises(UserError, match="unknown model"):
        create_model("resnet50")


# --- metadata -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, size", [("efficientnet-b0", 224), ("efficientnet-b4", 380), ("efficientnet-widese-b4", 380)]
)
def test_pretrained_cfg(name, size):
    cfg = create_model(name, num_classes=7).pretrained_cfg
    assert cfg["architecture"] == name
    assert tuple(cfg["input_size"]) == (3, size, size)
    assert cfg["crop_pct"] == pytest.approx(size / (size + 32))
    assert cfg["interpolation"] == "bicubic"
    assert tuple(cfg["mean"]) == pytest.approx(IMAGENET_MEAN)
    assert tuple(cfg["std"]) == pytest.approx(IMAGENET_STD)
    assert cfg["num_classes"] == 7


def test_crop_pct_values():
    assert get_model_info("efficientnet-b0").crop_pct == pytest.approx(224 / 256)
    assert get_model_info("efficientnet-b4").crop_pct == pytest.approx(380 / 412)


# --- architecture against upstream --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PARAM_COUNTS))
def test_parameter_count(imagenet_models, name):
    assert sum(p.numel() for p in imagenet_models[name].parameters()) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", list(PARAM_COUNTS))
def test_state_dict_keys_match_ngc(imagenet_models, name):
    path = NGC_KEYS / f"{name}.keys.json"
    if not NGC_KEYS.is_dir():
        pytest.skip(f"reference key lists not available: {NGC_KEYS} does not exist")
    data = json.loads(path.read_text())
    assert data["model"] == name
    expected = [(k, tuple(shape)) for k, shape in data["keys"]]
    actual = [(k, tuple(v.shape)) for k, v in imagenet_models[name].state_dict().items()]
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a == e, f"entry {i}: {a} != {e}"


def test_batchnorm_settings_match_upstream():
    model = create_model("efficientnet-b0", num_classes=7)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    assert all(m.eps == pytest.approx(1e-3) and m.momentum == pytest.approx(0.01) for m in bns)


def test_default_dropout():
    assert create_model("efficientnet-b0", num_classes=7).classifier.dropout.p == pytest.approx(0.2)
    assert create_model("efficientnet-widese-b4", num_classes=7).classifier.dropout.p == pytest.approx(0.4)


@pytest.mark.parametrize("name, survival", [("efficientnet-b4", 0.8), ("efficientnet-b0", 1.0)])
def test_survival_schedule_is_linear_in_block_index(name, survival):
    model = create_model(name, num_classes=7)
    blocks = [block for stage in model.layers for block in stage]
    seen = 0
    for i, block in enumerate(blocks):
        if block.residual_add is None:
            continue
        seen += 1
        expected = 1.0 - (1.0 - survival) * i / len(blocks)
        assert block.residual_add.survival_prob == pytest.approx(expected), i
    assert seen > 0


# --- stochastic depth ---------------------------------------------------------------------------------


def test_stochastic_depth_drops_per_sample():
    torch.manual_seed(0)
    sd = StochasticDepthResidual(0.5).train()
    residual = torch.zeros(64, 3, 4, 4)
    branch = torch.ones(64, 3, 4, 4)
    out = sd(residual, branch)
    per_sample = out.flatten(1)
    # Every sample either keeps the whole branch (scaled by 1/p = 2) or drops it entirely.
    assert torch.equal(per_sample, per_sample[:, :1].expand_as(per_sample))
    values = per_sample[:, 0]
    kept, dropped = (values == 2.0), (values == 0.0)
    assert torch.all(kept | dropped)
    assert kept.any() and dropped.any(), "the whole batch kept or dropped the branch together"


def test_stochastic_depth_kept_branch_scaled():
    torch.manual_seed(1)
    sd = StochasticDepthResidual(0.8).train()
    residual = torch.full((32, 2, 3, 3), 3.0)
    branch = torch.randn(32, 2, 3, 3)
    out = sd(residual, branch)
    for i in range(32):
        if torch.equal(out[i], residual[i]):
            continue
        torch.testing.assert_close(out[i], residual[i] + branch[i] / 0.8)


def test_stochastic_depth_eval_is_plain_add():
    sd = StochasticDepthResidual(0.5).eval()
    residual, branch = torch.randn(64, 3, 4, 4), torch.randn(64, 3, 4, 4)
    assert torch.equal(sd(residual, branch), residual + branch)


def test_stochastic_depth_survival_one_in_train_is_plain_add():
    sd = StochasticDepthResidual(1.0).train()
    residual, branch = torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4)
    assert torch.equal(sd(residual, branch), residual + branch)


# --- TensorRT-friendly SE -----------------------------------------------------------------------------


def test_trt_conv_se_has_4d_weights():
    model = create_model("efficientnet-b0", num_classes=7, trt=True)
    se = {k: v for k, v in model.state_dict().items() if ".se." in k and k.endswith(".weight")}
    assert se
    assert all(v.dim() == 4 and v.shape[-2:] == (1, 1) for v in se.values())
    plain = create_model("efficientnet-b0", num_classes=7)
    assert all(plain.state_dict()[k].dim() == 2 for k in se)
    assert all(plain.state_dict()[k].numel() == v.numel() for k, v in se.items())
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 7)
