"""GPUNet: registry entries, parameter counts, upstream checkpoint key names, spatial sizes and builder kwargs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common.cli_errors import UserError
from image_classification.models import create_model, get_model_info, list_models
from image_classification.models.checkpoint import load_pretrained, load_state_dict_checked
from image_classification.models.gpunet import GPUNet, to_upstream_state_dict
from image_classification.models.gpunet_archs import ARCHS
from image_classification.models.registry import IMAGENET_MEAN, IMAGENET_STD

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
NGC_KEYS = SHARED / "reference/ngc-keys"

PARAM_COUNTS = {
    "gpunet-0": 11_885_432,
    "gpunet-1": 12_704_192,
    "gpunet-2": 25_798_704,
    "gpunet-p0": 22_815_080,
    "gpunet-p1": 39_905_672,
    "gpunet-d1": 10_589_859,
    "gpunet-d2": 19_036_728,
}
NAMES = list(PARAM_COUNTS)
# name: (marketing name, latency key, input size, crop_pct, NGC id)
META = {
    "gpunet-0": ("GPUNet-0", "0.65ms", 320, 1.0, "gpunet_0"),
    "gpunet-1": ("GPUNet-1", "0.85ms", 288, 1.0, "gpunet_1"),
    "gpunet-2": ("GPUNet-2", "1.75ms", 384, 1.0, "gpunet_2"),
    "gpunet-p0": ("GPUNet-P0", "0.5ms-D", 224, 0.875, "gpunet_p0"),
    "gpunet-p1": ("GPUNet-P1", "0.8ms-D", 224, 0.875, "gpunet_p1"),
    "gpunet-d1": ("GPUNet-D1", "1.25ms-D", 456, 1.0, "gpunet_d1"),
    "gpunet-d2": ("GPUNet-D2", "2.25ms-D", 528, 1.0, "gpunet_d2"),
}


@pytest.fixture(scope="module")
def imagenet_models():
    torch.manual_seed(0)
    return {name: create_model(name) for name in NAMES}


def ngc_keys(name: str) -> dict:
    if not NGC_KEYS.is_dir():
        pytest.skip(f"reference key lists not available: {NGC_KEYS} does not exist")
    return json.loads((NGC_KEYS / f"{name}.keys.json").read_text())


def upstream_random_state_dict(name: str, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors under upstream's names and shapes (num_batches_tracked included), as in an NGC checkpoint."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in ngc_keys(name)["keys"]:
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(int(torch.randint(1, 10_000, (), generator=g)))
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g)
    return out


def assert_loaded(model: GPUNet, upstream_sd: dict[str, torch.Tensor]) -> None:
    back = to_upstream_state_dict(model)
    assert list(back) == list(upstream_sd)
    for key, value in upstream_sd.items():
        assert torch.equal(back[key], value), key


def single_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg, msg
    return msg


# --- registry -----------------------------------------------------------------------------------------------------


def test_all_gpunet_names_listed():
    assert list_models("gpunet*") == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_alias_resolves(name):
    marketing, latency, *_ = META[name]
    for spelling in (name, name.replace("-", "_"), name.upper(), latency, latency.lower(), marketing):
        assert get_model_info(spelling).name == name, spelling


@pytest.mark.parametrize("name", NAMES)
def test_metadata(name):
    _, _, size, crop, ngc_id = META[name]
    info = get_model_info(name)
    assert info.family == "gpunet"
    assert info.input_size == size == ARCHS[name].resolution
    assert info.crop_pct == crop
    assert info.interpolation == "bicubic"
    assert info.mean == IMAGENET_MEAN and info.std == IMAGENET_STD
    assert info.weights_url == (
        f"https://api.ngc.nvidia.com/v2/models/nvidia/dle/{ngc_id}_pyt_ckpt/versions/21.12.0_amp/zip"
    )
    cfg = create_model(name, num_classes=3).pretrained_cfg
    assert cfg["architecture"] == name and tuple(cfg["input_size"]) == (3, size, size)
    assert cfg["crop_pct"] == crop and cfg["num_classes"] == 3


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count(imagenet_models, name):
    assert sum(p.numel() for p in imagenet_models[name].parameters()) == PARAM_COUNTS[name]


def test_clean_module_names(imagenet_models):
    for name, model in imagenet_models.items():
        keys = list(model.state_dict())
        assert all(" " not in k and ":" not in k for k in keys), name
        assert {k.split(".")[0] for k in keys} == {"stem", "blocks", "head"}, name
        assert keys[-2:] == ["head.fc.weight", "head.fc.bias"]
    assert "blocks.9.conv_pw.weight" in imagenet_models["gpunet-0"].state_dict()
    assert "blocks.0.conv_dw.weight" in imagenet_models["gpunet-d1"].state_dict()
    assert "stem.conv3.weight" in imagenet_models["gpunet-d2"].state_dict()


def test_batchnorm_eps_per_family(imagenet_models):
    def eps(model):
        return {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}

    assert eps(imagenet_models["gpunet-0"]) == {1e-3}
    assert eps(imagenet_models["gpunet-p1"]) == {1e-3}
    assert eps(imagenet_models["gpunet-d1"]) == {1e-5}
    assert eps(imagenet_models["gpunet-d2"]) == {1e-5}


# --- upstream checkpoint names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_upstream_names_and_shapes_match_ngc(imagenet_models, name):
    data = ngc_keys(name)
    assert data["model"] == name and data["img_resolution"] == get_model_info(name).input_size
    expected = [(k, tuple(shape)) for k, shape in data["keys"]]
    actual = [(k, tuple(v.shape)) for k, v in to_upstream_state_dict(imagenet_models[name]).items()]
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a == e, f"entry {i}: {a} != {e}"


@pytest.mark.parametrize("name", NAMES)
def test_load_upstream_named_weights(name):
    upstream_sd = upstream_random_state_dict(name, seed=1)
    model = create_model(name)
    load_state_dict_checked(model, upstream_sd)
    assert_loaded(model, upstream_sd)


@pytest.mark.parametrize("name", ["gpunet-1", "gpunet-d2"])
def test_load_upstream_names_with_prefix_and_ema(tmp_path, name):
    raw, ema = upstream_random_state_dict(name, seed=2), upstream_random_state_dict(name, seed=3)
    model = create_model(name)
    load_state_dict_checked(model, {"module." + k: v for k, v in raw.items()})
    assert_loaded(model, raw)

    path = tmp_path / "ckpt.pth.tar"
    torch.save({"epoch": 3, "arch": name.replace("-", "_"), "state_dict": {"module." + k: v for k, v in raw.items()},
                "state_dict_ema": {"module." + k: v for k, v in ema.items()}}, path)
    meta = load_pretrained(model, path)
    assert meta["weights_used"] == "state_dict_ema"
    assert_loaded(model, ema)
    load_pretrained(model, path, weights="raw")
    assert_loaded(model, raw)


def test_own_keys_pass_unchanged_and_round_trip(imagenet_models):
    model = imagenet_models["gpunet-2"]
    own = model.state_dict()
    assert list(model.adapt_state_dict(own)) == list(own)
    upstream = to_upstream_state_dict(model)
    adapted = model.adapt_state_dict(dict(upstream))
    assert list(adapted) == list(own)
    assert all(torch.equal(adapted[k], own[k]) for k in own)


def test_upstream_names_with_other_class_count_need_fresh_classifier():
    upstream_sd = upstream_random_state_dict("gpunet-p0", seed=4)
    model = create_model("gpunet-p0", num_classes=10)
    with pytest.raises(UserError, match="1000 classes but the model has 10") as err:
        load_state_dict_checked(model, upstream_sd)
    single_line(err)
    fc_before = model.get_classifier().weight.clone()
    load_state_dict_checked(model, upstream_sd, fresh_classifier=True)
    assert torch.equal(model.get_classifier().weight, fc_before)
    assert torch.equal(model.stem.conv.weight, upstream_sd["network.head: 2.net.0.weight"])


def test_wrong_architecture_names_the_problem():
    with pytest.raises(UserError, match="does not fit") as err:
        load_state_dict_checked(create_model("gpunet-0"), upstream_random_state_dict("gpunet-1", seed=5))
    single_line(err)


# --- spatial sizes ------------------------------------------------------------------------------------------------


def spatial_sizes(model: GPUNet, size: int) -> list[int]:
    """Distinct feature-map sizes after the stem and each block, in order."""
    seen: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
             for m in (model.stem, *model.blocks)]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    return [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]


@pytest.mark.parametrize(
    "name, size, expected",
    [
        # A stride-2 fused_irb pads nothing (upstream's "same" quirk), so the plain models do not halve cleanly.
        ("gpunet-0", 320, [160, 79, 39, 20, 10]),
        ("gpunet-1", 288, [144, 71, 35, 18, 9]),
        ("gpunet-2", 384, [192, 94, 46, 23, 12]),
        ("gpunet-d1", 456, [228, 114, 57, 29, 15]),
        ("gpunet-d1", 96, [48, 24, 12, 6, 3]),
        ("gpunet-p0", 224, [112, 56, 28, 14, 7, 4]),
    ],
)
def test_spatial_sizes(imagenet_models, name, size, expected):
    assert spatial_sizes(imagenet_models[name], size) == expected


# --- builder kwargs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpunet-0", "gpunet-d1"])
def test_num_classes_and_dropout(name):
    model = create_model(name, num_classes=17, dropout=0.35)
    assert model.get_classifier().weight.shape == (17, model.num_features)
    assert model.head.dropout.p == pytest.approx(0.35)
    assert create_model(name, num_classes=5).head.dropout.p == pytest.approx(0.2)
    assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 17)
    model.reset_classifier(4)
    assert model.get_classifier().out_features == 4
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)


def _residual_rates(model: GPUNet) -> dict[int, float]:
    return {i: 1.0 - b.residual_add.survival_prob for i, b in enumerate(model.blocks) if b.residual_add is not None}


@pytest.mark.parametrize("name", ["gpunet-0", "gpunet-2", "gpunet-p1"])
def test_drop_path_ramp_follows_json_index(name):
    model = create_model(name, num_classes=5)
    n = len(model.spec.layers) + 1  # upstream's JSON list, data entry included
    rates = _residual_rates(model)
    assert rates
    for i, rate in rates.items():
        j = i + 2  # blocks.i is JSON entry i + 2 (data, head come first)
        assert rate == pytest.approx(0.2 * j / (n - 1)), i
    half = _residual_rates(create_model(name, num_classes=5, drop_path_rate=0.1))
    assert all(half[i] == pytest.approx(rates[i] / 2) for i in rates)
    assert set(_residual_rates(create_model(name, num_classes=5, drop_path_rate=0)).values()) == {0.0}
    assert _residual_rates(create_model(name, num_classes=5, survival_prob=0.9)) == pytest.approx(half)


def test_distill_models_default_to_no_drop_path_like_upstream():
    assert set(_residual_rates(create_model("gpunet-d1", num_classes=5)).values()) == {0.0}
    rates = _residual_rates(create_model("gpunet-d1", num_classes=5, drop_path_rate=0.2))
    assert max(rates.values()) == pytest.approx(0.2 * 23 / 24)


def test_bad_kwargs_are_user_errors():
    for kwargs in ({"dropout": 1.0}, {"drop_path_rate": -0.1}, {"drop_path_rate": 1.0}, {"survival_prob": 0.0},
                   {"survival_prob": 0.8, "drop_path_rate": 0.1}):
        with pytest.raises(UserError) as err:
            create_model("gpunet-0", num_classes=5, **kwargs)
        single_line(err)


def test_drop_path_is_per_sample_in_train_mode():
    torch.manual_seed(0)
    model = create_model("gpunet-0", num_classes=5, drop_path_rate=0.9).train()
    index, block = max(((i, b) for i, b in enumerate(model.blocks) if b.residual_add is not None),
                       key=lambda ib: 1.0 - ib[1].residual_add.survival_prob)
    keep = block.residual_add.survival_prob
    assert keep < 0.6
    x = torch.randn(48, block.conv_pwl.out_channels, 6, 6)
    with torch.no_grad():
        block.residual_add.eval()  # the branch alone (BN in train mode is deterministic for a given batch)
        branch = block(x) - x
        block.residual_add.train()
        delta = block(x) - x
    kept = [torch.allclose(d, b / keep, atol=1e-5) for d, b in zip(delta, branch)]
    dropped = [torch.equal(d, torch.zeros_like(d)) for d in delta]
    assert all(k or d for k, d in zip(kept, dropped))
    assert any(kept) and any(dropped), "the whole batch kept or dropped the branch together"

    with torch.no_grad():
        model.eval()
        img = torch.randn(2, 3, 64, 64)
        assert torch.equal(model(img), model(img))


def test_drop_path_zero_is_deterministic_in_train_mode():
    torch.manual_seed(0)
    img = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        off = create_model("gpunet-1", num_classes=5, drop_path_rate=0, dropout=0.0).train()
        assert torch.equal(off(img), off(img))
        on = create_model("gpunet-1", num_classes=5, drop_path_rate=0.5, dropout=0.0).train()
        assert not torch.equal(on(img), on(img))


@pytest.mark.parametrize("name, size", [("gpunet-2", 100), ("gpunet-d2", 72), ("gpunet-p1", 130)])
def test_forward_at_other_resolution_and_every_parameter_gets_a_gradient(name, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=6).train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 6)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing[:5]
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith("stem."))


def test_model_config_metadata_follows_the_users_file(tmp_path):
    from image_classification.models.gpunet_archs import ARCHS as archs

    config = archs["gpunet-0"].to_upstream()
    config[0]["img_resolution"] = 256
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(config))
    model = create_model("gpunet-0", num_classes=10, model_config=str(path))
    assert model.pretrained_cfg["input_size"] == (3, 256, 256)
    assert create_model("gpunet-0", num_classes=10).pretrained_cfg["input_size"] == (3, 320, 320)


def test_published_weights_name_the_unzipped_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(UserError, match=r"unzip it and take 0\.65ms\.pth\.tar") as exc:
        create_model("gpunet-0", pretrained=True)
    assert "gpunet_0_pyt_ckpt" in str(exc.value)
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict_ema": to_upstream_state_dict(create_model("gpunet-0"))},
               tmp_path / "checkpoints" / "0.65ms.pth.tar")
    create_model("gpunet-0", pretrained=True)
