"""Our models in timm's registry: names, pretrained_cfg, timm's create_model keywords, weights from the cache only."""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest
import torch

from common.cli_errors import UserError
from image_classification.models import create_model, get_model_info, list_models, timm_registry
from tests.conftest import REPO, save_published_weights

timm = pytest.importorskip("timm")

BRIEF_NAMES = (
    [f"nvidia_efficientnet_b{i}" for i in range(8)]
    + [f"nvidia_efficientnet_widese_b{i}" for i in range(8)]
    + [f"nvidia_gpunet_{v}" for v in ("0", "1", "2", "p0", "p1", "d1", "d2")]
)
OUR_MODELS = [n for n in list_models() if not get_model_info(n).quantized]


def test_every_model_is_listed_by_timm():
    listed = timm.list_models("nvidia_*")
    assert sorted(listed) == sorted(BRIEF_NAMES)
    assert sorted(listed) == sorted(timm_registry.timm_name(n) for n in OUR_MODELS)
    # The INT8 variants need quant_main.py's quantizers, which timm's scripts never add.
    assert not timm.is_model("nvidia_efficientnet_quant_b0")
    assert "nvidia_gpunet_0" in timm.list_models(pretrained=True)  # it names published weights (never fetched)


def test_registering_again_neither_raises_nor_warns():
    before = {n: timm.models.model_entrypoint(n) for n in BRIEF_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(timm_registry.register_all()) == sorted(BRIEF_NAMES)
        importlib.reload(timm_registry)
        importlib.reload(sys.modules["image_classification.models"])
    assert {n: timm.models.model_entrypoint(n) for n in BRIEF_NAMES} == before


def test_without_timm_nothing_is_registered(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm.models", None)  # `from timm.models import ...` now raises ImportError
    assert timm_registry.register_all() == []
    # not installed at all: no import hook waits for it either
    monkeypatch.delitem(sys.modules, "timm.models")
    monkeypatch.setattr(timm_registry.importlib.util, "find_spec", lambda name: None)
    hooks = list(sys.meta_path)
    timm_registry.register_with_timm()
    assert sys.meta_path == hooks


def test_importing_our_models_does_not_load_timm_yet_registers_when_it_loads():
    """timm (and torchvision with it) costs seconds at every CLI start, so it is not imported by us; importing it
    later, by any route, still finds our models."""
    code = ("import sys, image_classification.models\n"
            "assert 'timm' not in sys.modules and 'torchvision' not in sys.modules\n"
            "from timm.models import create_model, list_models\n"
            "print(len(list_models('nvidia_*')), type(create_model('nvidia_gpunet_p0')).__name__)")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(len(BRIEF_NAMES)), "GPUNet"]


@pytest.mark.parametrize("name", OUR_MODELS)
def test_pretrained_cfg_carries_our_metadata(name):
    info = get_model_info(name)
    cfg = timm.models.get_pretrained_cfg(timm_registry.timm_name(name))
    assert cfg.architecture == timm_registry.timm_name(name)
    assert cfg.input_size == (3, info.input_size, info.input_size)
    assert (cfg.crop_pct, cfg.interpolation, cfg.mean, cfg.std) == (info.crop_pct, info.interpolation, info.mean,
                                                                    info.std)
    assert cfg.num_classes == 1000
    assert cfg.url == info.weights_url


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnet-widese-b0"]
                         + [n for n in OUR_MODELS if n.startswith("gpunet-")])
def test_first_conv_and_classifier_name_our_modules(name):
    cfg = timm.models.get_pretrained_cfg(timm_registry.timm_name(name))
    model = create_model(name)
    modules = dict(model.named_modules())
    first = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))
    assert cfg.first_conv == first and modules[first].in_channels == 3
    assert isinstance(modules[cfg.classifier], torch.nn.Linear)
    assert f"{cfg.classifier}.weight" in model.classifier_keys


@pytest.mark.parametrize("name", ["nvidia_efficientnet_b0", "nvidia_gpunet_0", "nvidia_gpunet_d1"])
def test_timm_create_model_and_data_config(name):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    info = get_model_info(name)
    assert model.num_classes == 10 and model.pretrained_cfg["num_classes"] == 10
    config = timm.data.resolve_data_config({}, model=model)
    assert config == {"input_size": (3, info.input_size, info.input_size), "interpolation": info.interpolation,
                      "mean": info.mean, "std": info.std, "crop_pct": info.crop_pct, "crop_mode": "center"}
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    # timm's eval transform from that config crops to our resolution.
    transform = timm.data.create_transform(**config)
    from PIL import Image

    assert transform(Image.new("RGB", (500, 400))).shape == (3, info.input_size, info.input_size)


def test_keywords_of_timm_train_py_reach_efficientnet():
    # train.py passes exactly these (None values are dropped by timm.create_model).
    model = timm.create_model("nvidia_efficientnet_b0", pretrained=False, in_chans=3, num_classes=None, drop_rate=0.3,
                              drop_path_rate=0.1, drop_block_rate=None, global_pool=None, bn_momentum=0.05,
                              bn_eps=1e-5, scriptable=False, checkpoint_path="")
    assert model.num_classes == 1000
    assert model.classifier.dropout.p == 0.3
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in bns} == {(1e-5, 0.05)}
    # The same linear ramp: the last block survives with 1 - drop_path_rate * 15/16.
    assert model.layers[-1].block0.residual_add is None
    assert model.layers[-2][-1].residual_add.survival_prob == pytest.approx(1 - 0.1 * 14 / 16)


def test_keywords_of_timm_benchmark_py_reach_gpunet():
    model = timm.create_model("nvidia_gpunet_1", num_classes=None, in_chans=3, global_pool=None, scriptable=False,
                              drop_rate=0.0, drop_path_rate=0.05, drop_block_rate=None)
    assert model.num_classes == 1000 and model.drop_path_rate == 0.05 and model.head.dropout.p == 0.0
    # a training step as benchmark.py's train mode and train.py run it, with timm's optimizer factory
    from timm.optim import create_optimizer_v2

    optimizer = create_optimizer_v2(model, opt="sgd", lr=0.01)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([1, 2]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name, kwargs, fragment", [
    ("nvidia_gpunet_0", {"bn_eps": 1e-5}, "BatchNorm settings are fixed"),
    ("nvidia_gpunet_0", {"in_chans": 1}, "in_chans 3"),
    ("nvidia_efficientnet_b0", {"global_pool": "max"}, "averaging"),
    ("nvidia_efficientnet_b0", {"drop_block_rate": 0.1}, "DropBlock"),
    ("nvidia_efficientnet_b0", {"features_only": True}, "feature-extraction"),
])
def test_keywords_our_models_cannot_honour_are_one_clear_error(name, kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        timm.create_model(name, **kwargs)


def test_nvidia_names_resolve_in_our_registry():
    assert get_model_info("nvidia_gpunet_0").name == "gpunet-0"
    assert get_model_info("nvidia_efficientnet_widese_b4").name == "efficientnet-widese-b4"


# --- weights: from the torch hub cache or a named file, never downloaded ------------------------------------------


def test_pretrained_reads_the_cached_file(torch_home):
    torch.manual_seed(1)
    published = create_model("efficientnet-b0").state_dict()
    save_published_weights("efficientnet-b0", published)
    model = timm.create_model("nvidia_efficientnet_b0", pretrained=True)
    assert all(torch.equal(v, published[k]) for k, v in model.state_dict().items())
    # another class count: timm's habit, the backbone is kept and the head starts afresh
    ten = timm.create_model("nvidia_efficientnet_b0", pretrained=True, num_classes=10)
    assert torch.equal(ten.stem.conv.weight, published["stem.conv.weight"])
    assert ten.classifier.fc.out_features == 10


def test_pretrained_without_the_cached_file_says_what_to_fetch(torch_home):
    info = get_model_info("gpunet-0")
    with pytest.raises(UserError) as excinfo:
        timm.create_model("nvidia_gpunet_0", pretrained=True)
    message = str(excinfo.value)
    assert info.weights_url in message and str(torch_home / "0.65ms.pth.tar") in message
    assert "\n" not in message


def test_pretrained_path_of_timm_train_py_loads_that_file(torch_home, tmp_path):
    """train.py --pretrained-path puts the file in pretrained_cfg_overlay (num_classes -1: adapt the head)."""
    torch.manual_seed(2)
    weights = create_model("gpunet-p0", num_classes=5).state_dict()
    path = tmp_path / "mine.pth"
    torch.save(weights, path)
    model = timm.create_model("nvidia_gpunet_p0", pretrained=True, num_classes=5,
                              pretrained_cfg_overlay=dict(file=str(path), num_classes=-1))
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
