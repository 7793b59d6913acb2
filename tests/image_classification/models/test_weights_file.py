"""Weights files that carry their architecture, class names and preprocessing (.pth, .safetensors, a Hugging
Face-style folder), the one loader every tool uses, and upstream's checkpoint2model -> classify flow."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common.cli_errors import UserError
from image_classification.models import create_model, get_model_info
from image_classification.models.checkpoint import read_checkpoint
from image_classification.models.loading import export_weights, load_checkpoint_model
from image_classification.models.weights_file import HF_CONFIG, HF_WEIGHTS, RECORD_KEY
from image_classification.preprocessing import Preprocessing
from tests.conftest import REPO, assert_one_line_error, run_script

ARCH = "efficientnet-b0"
NAMES = [f"digit-{d}" for d in range(10)]
FORMATS = {"pth": "weights.pth", "safetensors": "weights.safetensors", "hf": "hf_model"}


def training_checkpoint(path: Path, seed: int = 0) -> tuple[Path, dict, dict]:
    """A checkpoint in the trainer's layout: 10 classes at 48 px, raw and EMA weights that differ."""
    torch.manual_seed(seed)
    raw = create_model(ARCH, num_classes=10, bn_epsilon=1e-3).state_dict()
    ema = {k: v + 0.5 if v.is_floating_point() else v for k, v in raw.items()}
    cfg = {**get_model_info(ARCH).metadata(), "input_size": (3, 48, 48), "crop_pct": 0.75, "interpolation": "bilinear",
           "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    torch.save({"epoch": 3, "arch": ARCH, "num_classes": 10, "class_names": NAMES, "best_prec1": 91.5,
                "model_kwargs": {"bn_epsilon": 1e-3}, "model_cfg": cfg,
                "state_dict": {"module." + k: v for k, v in raw.items()},
                "state_dict_ema": {"module." + k: v for k, v in ema.items()}}, path)
    return path, raw, ema


def assert_weights(model: torch.nn.Module, expected: dict) -> None:
    actual = model.state_dict()
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_weights_file_round_trip(tmp_path, fmt):
    checkpoint, raw, ema = training_checkpoint(tmp_path / "checkpoint.pth.tar")
    out = tmp_path / FORMATS[fmt]
    meta = export_weights(checkpoint, out, ema=True, fmt=fmt)
    assert meta["which"] == "state_dict_ema" and meta["record"] and meta["format"] == fmt

    loaded = load_checkpoint_model(out)  # no arch given: the file names it
    assert loaded.name == ARCH and loaded.num_classes == 10 and loaded.class_names == NAMES
    assert loaded.preprocessing == Preprocessing(48, 0.75, "bilinear", (0.5,) * 3, (0.25,) * 3)
    assert loaded.preprocessing_recorded
    assert loaded.model_kwargs == {"bn_epsilon": 1e-3}
    assert all(m.eps == 1e-3 for m in loaded.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert_weights(loaded.model, ema)
    # Training's --pretrained-from-file reads the same files.
    assert_weights(create_model(ARCH, pretrained=out, num_classes=10, bn_epsilon=1e-3), ema)


def test_pth_weights_stay_a_plain_state_dict(tmp_path):
    """Upstream's loaders do `model.load_state_dict(torch.load(f))`: the record must not get in their way."""
    checkpoint, raw, _ = training_checkpoint(tmp_path / "checkpoint.pth.tar")
    export_weights(checkpoint, tmp_path / "model.pth")
    plain = torch.load(tmp_path / "model.pth", map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in plain.values()) and list(plain) == list(raw)
    model = create_model(ARCH, num_classes=10, bn_epsilon=1e-3)
    model.load_state_dict(plain)
    assert_weights(model, raw)
    assert json.loads(plain._metadata[""][RECORD_KEY])["arch"] == ARCH


def test_safetensors_header_and_hf_folder_layout(tmp_path):
    from safetensors import safe_open

    checkpoint, raw, _ = training_checkpoint(tmp_path / "checkpoint.pth.tar")
    export_weights(checkpoint, tmp_path / "w.safetensors")
    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as f:
        record = json.loads(f.metadata()[RECORD_KEY])
        assert set(f.keys()) == set(raw)
    assert record["arch"] == ARCH and record["class_names"] == NAMES and record["weights"] == "state_dict"
    assert record["model_cfg"]["input_size"] == [3, 48, 48] and record["version"]

    folder = tmp_path / "hf"
    export_weights(checkpoint, folder, fmt="hf")
    assert sorted(p.name for p in folder.iterdir()) == [HF_CONFIG, HF_WEIGHTS]
    config = json.loads((folder / HF_CONFIG).read_text())
    # timm's keys: what timm.create_model("local-dir:...") and the Hub read.
    assert config["architecture"] == "nvidia_efficientnet_b0" and config["num_classes"] == 10
    assert config["label_names"] == NAMES and config["model_args"] == {"bn_epsilon": 1e-3}
    assert config["pretrained_cfg"]["input_size"] == [3, 48, 48]
    assert config["pretrained_cfg"]["crop_pct"] == 0.75 and config["pretrained_cfg"]["num_classes"] == 10


def test_hf_folder_written_by_another_tool(tmp_path):
    """A folder with timm's config.json and model.safetensors but no record of ours: its config still counts."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = create_model(ARCH, num_classes=4)
    (tmp_path / "m").mkdir()
    save_file(model.state_dict(), str(tmp_path / "m" / HF_WEIGHTS))
    (tmp_path / "m" / HF_CONFIG).write_text(json.dumps({
        "architecture": "nvidia_efficientnet_b0", "num_classes": 4, "label_names": ["a", "b", "c", "d"],
        "pretrained_cfg": {"input_size": [3, 40, 40], "crop_pct": 1.0, "interpolation": "bicubic"}}))
    loaded = load_checkpoint_model(tmp_path / "m")
    assert loaded.name == ARCH and loaded.class_names == ["a", "b", "c", "d"]
    assert loaded.preprocessing.image_size == 40 and loaded.preprocessing_recorded
    assert_weights(loaded.model, model.state_dict())


def test_plain_safetensors_and_state_dict_need_an_arch(tmp_path):
    from safetensors.torch import save_file

    model = create_model(ARCH, num_classes=10)
    save_file(model.state_dict(), str(tmp_path / "plain.safetensors"))
    with pytest.raises(UserError, match="does not name its architecture: pass --arch"):
        load_checkpoint_model(tmp_path / "plain.safetensors")
    loaded = load_checkpoint_model(tmp_path / "plain.safetensors", ARCH)
    assert loaded.num_classes == 10 and not loaded.preprocessing_recorded and loaded.class_names is None
    assert loaded.preprocessing.image_size == get_model_info(ARCH).input_size


@pytest.mark.parametrize("damage", ["truncated", "bad record", "config not json", "no weights"])
def test_damaged_weights_files_are_one_line(tmp_path, damage):
    checkpoint, _, _ = training_checkpoint(tmp_path / "checkpoint.pth.tar")
    if damage == "truncated":
        export_weights(checkpoint, tmp_path / "w.safetensors")
        data = (tmp_path / "w.safetensors").read_bytes()
        (tmp_path / "w.safetensors").write_bytes(data[: len(data) // 2])
        target = tmp_path / "w.safetensors"
    elif damage == "bad record":
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(2)}, str(tmp_path / "w.safetensors"), metadata={RECORD_KEY: "{not json"})
        target = tmp_path / "w.safetensors"
    else:
        export_weights(checkpoint, tmp_path / "hf", fmt="hf")
        target = tmp_path / "hf"
        if damage == "config not json":
            (target / HF_CONFIG).write_text("{")
        else:
            (target / HF_WEIGHTS).unlink()
    with pytest.raises(UserError) as err:
        read_checkpoint(target)
    message = str(err.value)
    assert "\n" not in message and str(target) in message and message.startswith("cannot read checkpoint")


def test_export_refusals(tmp_path):
    checkpoint, raw, _ = training_checkpoint(tmp_path / "checkpoint.pth.tar")
    export_weights(checkpoint, tmp_path / "w.safetensors")
    with pytest.raises(UserError, match="already a plain weights file"):
        export_weights(tmp_path / "w.safetensors", tmp_path / "again.pth")
    # An upstream checkpoint that does not name its architecture: a plain .pth as upstream wrote, or --arch.
    torch.save({"state_dict": raw, "best_prec1": 1.0}, tmp_path / "upstream.pth.tar")
    meta = export_weights(tmp_path / "upstream.pth.tar", tmp_path / "plain.pth")
    assert not meta["record"] and not hasattr(torch.load(tmp_path / "plain.pth", weights_only=True), "_metadata")
    with pytest.raises(UserError, match="does not name its architecture.*pass --arch"):
        export_weights(tmp_path / "upstream.pth.tar", tmp_path / "w2.safetensors")
    meta = export_weights(tmp_path / "upstream.pth.tar", tmp_path / "w2.safetensors", arch=ARCH)
    assert meta["record"]


def test_conflicting_class_count_is_one_line(tmp_path):
    checkpoint, _, _ = training_checkpoint(tmp_path / "checkpoint.pth.tar")
    with pytest.raises(UserError, match="has 10 classes but --num-classes is 7"):
        load_checkpoint_model(checkpoint, num_classes=7)
    with pytest.raises(UserError, match="holds efficientnet-b0 weights, not efficientnet-b4"):
        load_checkpoint_model(checkpoint, "efficientnet-b4")


# --- upstream's flow: checkpoint2model.py -> classify.py ------------------------------------------------------------


@pytest.fixture(scope="module")
def held_out(digits_root) -> list[tuple[str, str]]:
    return [(str(p), d) for d in map(str, range(10)) for p in sorted((digits_root / "val" / d).glob("*.jpg"))[:1]]


def classify_all(weights: Path, held_out, *extra) -> tuple[list[str], str]:
    proc = run_script(REPO / "efficientnet" / "classify.py", "--weights", weights, "--json", "--topk", 1,
                      *extra, "--image", *[p for p, _ in held_out])
    assert proc.returncode == 0, proc.stderr
    return [r["predictions"][0]["class"] for r in json.loads(proc.stdout)], proc.stderr


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint2model_then_classify_keeps_names_and_size(trained_digits, held_out, tmp_path, suffix):
    """The flow that printed `class 0: 100.0%` for a 3: the weights file now says 32 px and the class names."""
    best = trained_digits[1] / "model_best.pth.tar"
    weights = tmp_path / f"model{suffix}"
    proc = run_script(REPO / "efficientnet" / "checkpoint2model.py", "--checkpoint-path", best, "--weight-path",
                      weights)
    assert proc.returncode == 0, proc.stderr
    predicted, stderr = classify_all(weights, held_out)
    assert "warning" not in stderr
    truth = [d for _, d in held_out]
    assert sum(p == t for p, t in zip(predicted, truth)) >= 8, (predicted, truth)


def test_plain_state_dict_warns_about_default_preprocessing(trained_digits, held_out, tmp_path):
    best = trained_digits[1] / "model_best.pth.tar"
    state_dict = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    torch.save({k.removeprefix("module."): v for k, v in state_dict.items()}, tmp_path / "bare.pth")
    _, stderr = classify_all(tmp_path / "bare.pth", held_out[:1], "--arch", ARCH)
    lines = [line for line in stderr.splitlines() if line.startswith("warning")]
    assert len(lines) == 1 and "does not record its preprocessing" in lines[0] and "--image-size" in lines[0]


def test_checkpoint2model_format_flag(trained_digits, tmp_path):
    best = trained_digits[1] / "model_best.pth.tar"
    proc = run_script(REPO / "efficientnet" / "checkpoint2model.py", "--checkpoint-path", best, "--weight-path",
                      tmp_path / "hf_folder", "--format", "hf")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "hf_folder" / HF_CONFIG).is_file() and (tmp_path / "hf_folder" / HF_WEIGHTS).is_file()
    bad = run_script(REPO / "efficientnet" / "checkpoint2model.py", "--checkpoint-path", tmp_path / "missing.pth",
                     "--weight-path", tmp_path / "x.safetensors")
    assert_one_line_error(bad, "checkpoint not found")


def test_save_pretrained_api(tmp_path):
    from image_classification.models.loading import save_pretrained

    torch.manual_seed(2)
    model = create_model("gpunet-0", num_classes=3)
    save_pretrained(model, tmp_path / "g0", class_names=["cat", "dog", "eel"])
    loaded = load_checkpoint_model(tmp_path / "g0")
    assert loaded.name == "gpunet-0" and loaded.class_names == ["cat", "dog", "eel"]
    assert loaded.preprocessing.image_size == get_model_info("gpunet-0").input_size
    assert_weights(loaded.model, model.state_dict())
    with pytest.raises(UserError, match="2 class names given for a model with 3 classes"):
        save_pretrained(model, tmp_path / "bad", class_names=["a", "b"])


def test_hf_folder_loads_in_timm(tmp_path):
    """The folder is what timm's local-dir: (and the Hub) read: same weights, class count and preprocessing."""
    import timm

    import image_classification.models  # noqa: F401  (registers the nvidia_ names with timm)

    checkpoint, raw, _ = training_checkpoint(tmp_path / "checkpoint.pth.tar")
    export_weights(checkpoint, tmp_path / "hf", fmt="hf")
    model = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True).eval()
    ours = load_checkpoint_model(tmp_path / "hf").model
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ours(x), rtol=0, atol=0)
    config = timm.data.resolve_data_config({}, model=model)
    assert tuple(config["input_size"]) == (3, 48, 48) and config["crop_pct"] == 0.75
    assert config["interpolation"] == "bilinear" and tuple(config["mean"]) == (0.5, 0.5, 0.5)


def test_unrecorded_preprocessing_warning_only_where_it_is_a_guess(tmp_path):
    """One line, naming the flag of the tool, for a plain state dict of a non-ImageNet model; none otherwise."""
    torch.manual_seed(3)
    torch.save(create_model(ARCH, num_classes=10).state_dict(), tmp_path / "bare.pth")
    torch.save(create_model(ARCH, num_classes=1000).state_dict(), tmp_path / "imagenet.pth")
    checkpoint, _, _ = training_checkpoint(tmp_path / "checkpoint.pth.tar")
    warning = load_checkpoint_model(tmp_path / "bare.pth", ARCH).unrecorded_preprocessing_warning("--img-size")
    assert warning and "\n" not in warning and "--img-size" in warning and "224 px" in warning
    assert load_checkpoint_model(tmp_path / "imagenet.pth", ARCH).unrecorded_preprocessing_warning("--x") is None
    assert load_checkpoint_model(checkpoint).unrecorded_preprocessing_warning("--x") is None
    assert load_checkpoint_model(None, ARCH, num_classes=10).unrecorded_preprocessing_warning("--x") is None
