"""hubconf.py through torch.hub.load(source="local"): upstream's entry points, weights from the cache only, helpers."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image

from common.cli_errors import UserError
from image_classification.models import create_model, get_model_info
from image_classification.models.gpunet import to_upstream_state_dict
from tests.conftest import REPO, save_published_weights


def hub_load(entry: str, *args, **kwargs):
    return torch.hub.load(str(REPO), entry, *args, source="local", **kwargs)


def signature(model: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("entry, kwargs, expected", [
    ("nvidia_efficientnet_b0", {}, "efficientnet-b0"),
    ("nvidia_efficientnet_b4", {}, "efficientnet-b4"),
    ("nvidia_efficientnet_widese_b0", {}, "efficientnet-widese-b0"),
    ("nvidia_efficientnet_widese_b4", {}, "efficientnet-widese-b4"),
    ("nvidia_efficientnet", {}, "efficientnet-b0"),
    ("nvidia_efficientnet", {"type": "efficient-b0"}, "efficientnet-b0"),  # upstream's misspelled default
    ("nvidia_efficientnet", {"type": "efficientnet_widese_b2"}, "efficientnet-widese-b2"),
    ("nvidia_gpunet", {}, "gpunet-0"),
    ("nvidia_gpunet", {"model_type": "GPUNet-P0"}, "gpunet-p0"),
    ("nvidia_gpunet", {"model_type": "2.25ms-D"}, "gpunet-d2"),  # a latency key
])
def test_entry_builds_the_right_architecture_and_runs(entry, kwargs, expected):
    model = hub_load(entry, pretrained=False, **kwargs).eval()
    assert model.pretrained_cfg["architecture"] == expected
    assert signature(model) == signature(create_model(expected))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_kwargs_reach_the_model():
    model = hub_load("nvidia_efficientnet_b0", pretrained=False, num_classes=10, dropout=0.5)
    assert model.classifier.fc.out_features == 10 and model.classifier.dropout.p == 0.5


def test_gpunet_fp16():
    model = hub_load("nvidia_gpunet", pretrained=False, model_type="GPUNet-1", model_math="fp16").eval()
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32, dtype=torch.float16)).dtype == torch.float16


# --- pretrained: the published file from the torch hub cache, never a download ------------------------------------


def test_pretrained_efficientnet_reads_the_cached_ngc_file(torch_home):
    torch.manual_seed(0)
    published = create_model("efficientnet-b0").state_dict()
    path = save_published_weights("efficientnet-b0", published)
    assert path.parent == torch_home and path.name == "nvidia_efficientnet-b0_210412.pth"
    model = hub_load("nvidia_efficientnet_b0")  # pretrained=True is upstream's default
    assert all(torch.equal(v, published[k]) for k, v in model.state_dict().items())


def test_pretrained_gpunet_reads_upstreams_checkpoint_and_prefers_ema(torch_home):
    torch.manual_seed(0)
    raw = create_model("gpunet-0")
    ema = create_model("gpunet-0")
    save_published_weights("gpunet-0", {"epoch": 450, "arch": "gpunet_0", "state_dict": to_upstream_state_dict(raw),
                                        "state_dict_ema": to_upstream_state_dict(ema)})
    model = hub_load("nvidia_gpunet", model_type="GPUNet-0")
    assert all(torch.equal(v, ema.state_dict()[k]) for k, v in model.state_dict().items())


def test_pretrained_from_file_replaces_the_published_weights(torch_home, tmp_path):
    torch.manual_seed(0)
    weights = create_model("efficientnet-widese-b0", num_classes=3).state_dict()
    torch.save(weights, tmp_path / "mine.pth")
    model = hub_load("nvidia_efficientnet", type="efficientnet-widese-b0", num_classes=3,
                     pretrained_from_file=str(tmp_path / "mine.pth"))
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("entry, kwargs, name", [
    ("nvidia_efficientnet_b4", {}, "efficientnet-b4"),
    ("nvidia_gpunet", {"model_type": "GPUNet-D1"}, "gpunet-d1"),
])
def test_missing_cached_weights_name_what_to_fetch_and_where(torch_home, entry, kwargs, name):
    info = get_model_info(name)
    with pytest.raises(UserError) as excinfo:
        hub_load(entry, **kwargs)
    message = str(excinfo.value)
    cached = torch_home / (info.weights_file or info.weights_url.rsplit("/", 1)[-1])
    assert info.weights_url in message and str(cached) in message and "\n" not in message
    assert not cached.exists()


def test_a_model_without_published_weights_says_so(torch_home):
    with pytest.raises(UserError, match="efficientnet-b1 has no published weights"):
        hub_load("nvidia_efficientnet", type="efficientnet-b1")


@pytest.mark.parametrize("entry, kwargs, fragments", [
    ("nvidia_efficientnet", {"type": "efficientnet-b9"}, ["'efficientnet-b9'", "efficientnet-b0", "efficientnet-b7",
                                                           "efficientnet-widese-b7"]),
    ("nvidia_efficientnet", {"type": "gpunet-0"}, ["'gpunet-0'", "efficientnet-b0"]),
    ("nvidia_gpunet", {"model_type": "GPUNet-3"}, ["'GPUNet-3'", "GPUNet-0", "GPUNet-D2", "0.65ms", "2.25ms-D"]),
    ("nvidia_gpunet", {"model_type": "efficientnet-b0"}, ["'efficientnet-b0'", "GPUNet-P1"]),
    ("nvidia_gpunet", {"model_math": "bf16"}, ["model_math", "fp32, fp16", "'bf16'"]),
])
def test_misspelled_names_are_one_clear_error(entry, kwargs, fragments):
    with pytest.raises(UserError) as excinfo:
        hub_load(entry, pretrained=False, **kwargs)
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


# --- processing utils ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def utils():
    return hub_load("nvidia_convnets_processing_utils")


def write_jpeg(path, size=(400, 300), mode="RGB"):
    pixels = torch.randint(0, 256, (size[1], size[0], 3 if mode == "RGB" else 1), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    Image.fromarray(pixels.squeeze(-1).numpy(), mode=mode).save(path, quality=95)
    return path


def test_prepare_input_matches_upstreams_preprocessing(utils, tmp_path):
    from torchvision import transforms

    path = write_jpeg(tmp_path / "photo.jpg")
    batch = utils.prepare_input_from_uri(str(path))
    # upstream: Resize(256), CenterCrop(224), ToTensor, then (x - mean) / std
    upstream = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                   transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with Image.open(path) as image:
        expected = upstream(image).unsqueeze(0)
    assert batch.shape == (1, 3, 224, 224) and batch.dtype == torch.float32
    torch.testing.assert_close(batch, expected, rtol=0, atol=1e-5)
    # a greyscale JPEG becomes three channels; a pathlib.Path works too
    assert utils.prepare_input_from_uri(write_jpeg(tmp_path / "grey.jpg", mode="L")).shape == (1, 3, 224, 224)


@pytest.mark.parametrize("uri, fragment", [
    ("https://example.com/cat.jpg", "is a URL, and nothing is downloaded"),
    ("{tmp}/missing.jpg", "no such file"),
    ("{tmp}/notes.jpg", "not an image"),
])
def test_prepare_input_refusals_are_one_line(utils, tmp_path, uri, fragment):
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(UserError, match=fragment):
        utils.prepare_input_from_uri(uri.format(tmp=tmp_path))


def test_pick_n_best_prints_and_returns_upstreams_format(utils, capsys):
    probabilities = torch.full((2, 1000), 0.1 / 998)
    probabilities[0, 1], probabilities[0, 2] = 0.6, 0.3
    probabilities[1, 999], probabilities[1, 0] = 0.7, 0.2
    classes = utils.get_imgnet_classes()
    result = utils.pick_n_best(probabilities, n=2)
    assert result == [[(classes[1], "60.0%"), (classes[2], "30.0%")], [(classes[999], "70.0%"), (classes[0], "20.0%")]]
    assert capsys.readouterr().out.splitlines() == [f"sample {i}: {row}" for i, row in enumerate(result)]
    assert (classes[0], classes[1], len(classes)) == ("tench", "goldfish", 1000)


@pytest.mark.parametrize("predictions, n, fragment", [
    (torch.randn(1, 1000) * 5, 5, "look like logits"),
    (torch.full((1, 10), 0.1), 5, "(samples, 1000)"),
    (torch.full((1, 1000), 1e-3), 0, "n must be between 1 and 1000"),
])
def test_pick_n_best_refusals(utils, predictions, n, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        utils.pick_n_best(predictions, n=n)


# --- the repository on sys.path ------------------------------------------------------------------------------------


def test_torch_hub_makes_the_repository_importable_from_anywhere(tmp_path):
    """A fresh interpreter elsewhere, without PYTHONPATH (the venv may even hold another checkout): torch.hub puts
    the repository on sys.path while loading, and the helpers' later imports still come from it."""
    photo = write_jpeg(tmp_path / "photo.jpg")
    code = textwrap.dedent(f"""
        import sys, torch
        utils = torch.hub.load({str(REPO)!r}, "nvidia_convnets_processing_utils", source="local")
        print(utils.prepare_input_from_uri({str(photo)!r}).shape[-1])
        print(sys.modules["image_classification"].__file__)
        print(sys.modules["image_classification.data.transforms"].__file__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    size, package, transforms = proc.stdout.split()
    assert size == "224"
    assert package == str(REPO / "image_classification" / "__init__.py")
    assert transforms == str(REPO / "image_classification" / "data" / "transforms.py")
