"""Loading weights from every supported checkpoint layout, and one-line errors for the ones that do not fit."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from common.cli_errors import UserError
from image_classification.models import create_model, get_model_info
from image_classification.models.checkpoint import load_pretrained
from image_classification.models.loading import export_weights
from tests.conftest import assert_one_line_error, run_in_process, run_script

REPO = Path(__file__).resolve().parents[3]
ARCH = "efficientnet-b0"
NUM_CLASSES = 10


def make(seed: int, name: str = ARCH, num_classes: int = NUM_CLASSES, **kwargs):
    torch.manual_seed(seed)
    return create_model(name, num_classes=num_classes, **kwargs).eval()


def perturbed(model) -> dict:
    """A state dict with non-trivial BN statistics, so buffers are checked along with parameters."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(123)
    for k, v in sd.items():
        if k.endswith("running_mean"):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
        elif k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) + 0.5)
    return sd


def prefixed(sd: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in sd.items()}


def assert_same_weights(model, expected: dict):
    actual = model.state_dict()
    assert list(actual) == list(expected)
    for k, v in expected.items():
        assert torch.equal(actual[k], v), k


def single_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg, msg
    return msg


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def source():
    """(model, state dict) whose weights differ from any freshly created model."""
    model = make(1)
    sd = perturbed(model)
    model.load_state_dict(sd)
    return model.eval(), sd


@pytest.fixture(scope="module")
def other_weights():
    """A second, different b0 state dict (stands in for EMA weights)."""
    return perturbed(make(2))


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def training_checkpoint(raw: dict, ema: dict | None = None, **extra) -> dict:
    """Upstream ConvNets' layout: DDP-prefixed weights, optimizer state, optional EMA."""
    model = make(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    ckpt = {"epoch": 5, "best_prec1": 77.25, "state_dict": prefixed(raw, "module."), "optimizer": opt.state_dict()}
    if ema is not None:
        ckpt["state_dict_ema"] = prefixed(ema, "module.")
    ckpt.update(extra)
    return ckpt


# --- plain state dicts --------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_plain_state_dict_with_prefixes(tmp_path, source, x, prefix):
    model, sd = source
    path = save(prefixed(sd, prefix), tmp_path / "weights.pth")
    loaded = create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES).eval()
    assert_same_weights(loaded, sd)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_plain_state_dict_refuses_ema_choice(tmp_path, source):
    path = save(source[1], tmp_path / "weights.pth")
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES, weights="ema")
    assert "EMA" in single_line(err)


def test_unknown_weights_choice(tmp_path, source):
    path = save(source[1], tmp_path / "weights.pth")
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES, weights="best")
    assert "best" in single_line(err)


# --- upstream training checkpoints --------------------------------------------------------------------


def test_training_checkpoint_ema_and_raw(tmp_path, source, other_weights):
    raw, ema = source[1], other_weights
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)
    path = save(training_checkpoint(raw, ema), tmp_path / "checkpoint.pth.tar")

    assert_same_weights(create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES), ema)  # auto -> EMA
    assert_same_weights(create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES, weights="ema"), ema)
    assert_same_weights(create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES, weights="raw"), raw)


def test_training_checkpoint_metadata(tmp_path, source, other_weights):
    path = save(training_checkpoint(source[1], other_weights, arch=ARCH), tmp_path / "checkpoint.pth.tar")
    meta = load_pretrained(make(0), path, weights="raw")
    assert meta["weights_used"] == "state_dict"
    assert meta["epoch"] == 5 and meta["best_prec1"] == 77.25


def test_training_checkpoint_without_ema(tmp_path, source):
    raw = source[1]
    path = save(training_checkpoint(raw), tmp_path / "checkpoint.pth.tar")
    assert_same_weights(create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES), raw)  # auto -> raw
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES, weights="ema")
    assert "EMA" in single_line(err)


def test_checkpoint_without_weights(tmp_path):
    path = save({"epoch": 1, "best_prec1": 0.0}, tmp_path / "checkpoint.pth.tar")
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES)
    assert "no model weights" in single_line(err)


# --- upstream spellings -------------------------------------------------------------------------------


def test_old_ngc_layer_names(tmp_path, source, x):
    model, sd = source
    old = {re.sub(r"^layers\.(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}.", k): v for k, v in sd.items()}
    assert "layer1.block0.depsep.conv.weight" in old and "layer7.block0.proj.conv.weight" in old
    assert not any(k.startswith("layers.") for k in old)
    path = save(old, tmp_path / "ngc.pth")
    loaded = create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES).eval()
    assert_same_weights(loaded, sd)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("src_trt, dst_trt", [(False, True), (True, False)])
def test_se_weights_between_linear_and_conv(tmp_path, x, src_trt, dst_trt):
    src = make(4, trt=src_trt)
    src.load_state_dict(perturbed(src))
    sd = src.state_dict()
    se_dim = 4 if src_trt else 2
    assert sd["layers.0.block0.se.squeeze.weight"].dim() == se_dim
    path = save(sd, tmp_path / "weights.pth")
    loaded = create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES, trt=dst_trt).eval()
    assert loaded.state_dict()["layers.0.block0.se.squeeze.weight"].dim() == (4 if dst_trt else 2)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v.flatten(), sd[k].flatten()), k
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x), rtol=1e-5, atol=1e-5)


def test_timm_checkpoint_with_pickled_namespace(tmp_path, source, other_weights):
    args = argparse.Namespace(model="efficientnet_b0", lr=0.08, epochs=450)
    ckpt = {
        "epoch": 12,
        "arch": "efficientnet_b0",  # timm writes args.model; the underscore alias must count as the same model
        "state_dict": source[1],
        "state_dict_ema": other_weights,
        "optimizer": {},
        "version": 2,
        "args": args,
        "metric": 71.5,
    }
    path = save(ckpt, tmp_path / "model_best.pth.tar")
    model = make(0)
    meta = load_pretrained(model, path, weights="raw")
    assert_same_weights(model, source[1])
    assert isinstance(meta["args"], argparse.Namespace) and meta["args"].lr == 0.08
    assert_same_weights(create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES), other_weights)


# --- refusals -----------------------------------------------------------------------------------------


def test_checkpoint_of_another_arch_refused(tmp_path, source):
    path = save({"arch": "efficientnet-b4", "state_dict": source[1]}, tmp_path / "checkpoint.pth.tar")
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES)
    msg = single_line(err)
    assert "efficientnet-b4" in msg and "efficientnet-b0" in msg


@pytest.fixture(scope="module")
def b4_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("b4") / "b4.pth"
    return save(make(5, "efficientnet-b4").state_dict(), path)


def test_wrong_model_weights(b4_weights):
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=b4_weights, num_classes=NUM_CLASSES)
    msg = single_line(err)
    assert "efficientnet-b0" in msg
    assert "unexpected keys" in msg and "shape mismatches" in msg
    assert "layers.0.block1" in msg  # b4 has two stage-0 blocks, b0 one


def test_wrong_model_weights_with_fresh_classifier(b4_weights):
    # With the classifier out of the way the body's mismatches must still be named, on one line.
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=b4_weights, num_classes=NUM_CLASSES, fresh_classifier=True)
    msg = single_line(err)
    assert "efficientnet-b0" in msg
    assert "unexpected keys" in msg and "shape mismatches" in msg
    assert "layers.0.block1" in msg
    assert "stem.conv.weight (48, 3, 3, 3) vs model (32, 3, 3, 3)" in msg


def test_missing_keys_reported(tmp_path, source):
    sd = {k: v for k, v in source[1].items() if not k.startswith("features.")}
    path = save(sd, tmp_path / "partial.pth")
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES)
    msg = single_line(err)
    assert "missing keys" in msg and "features." in msg


def test_class_count_mismatch_and_fresh_classifier(tmp_path):
    src = make(6, num_classes=1000)
    sd = perturbed(src)
    path = save(sd, tmp_path / "imagenet.pth")
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES)
    msg = single_line(err)
    assert "1000" in msg and str(NUM_CLASSES) in msg and "fresh" in msg

    model = create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES, fresh_classifier=True)
    own = model.state_dict()
    assert own["classifier.fc.weight"].shape == (NUM_CLASSES, model.num_features)
    assert own["classifier.fc.bias"].shape == (NUM_CLASSES,)
    body = [k for k in sd if not k.startswith("classifier.")]
    assert set(own) == set(sd)
    for k in body:
        assert torch.equal(own[k], sd[k]), k
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, NUM_CLASSES)


def test_missing_file(tmp_path):
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=tmp_path / "nope.pth", num_classes=NUM_CLASSES)
    assert "nope.pth" in single_line(err)


def test_text_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("this is not a checkpoint\nsecond line\nthird line\n")
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES)
    assert "notes.pth" in single_line(err)


def test_file_holding_a_list(tmp_path):
    path = save([torch.zeros(3), torch.ones(3)], tmp_path / "list.pth")
    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=path, num_classes=NUM_CLASSES)
    msg = single_line(err)
    assert "list.pth" in msg and "list" in msg


# --- checkpoint2model ---------------------------------------------------------------------------------


def test_export_weights_raw_and_ema_differ(tmp_path, source, other_weights):
    raw, ema = source[1], other_weights
    ckpt = save(training_checkpoint(raw, ema), tmp_path / "checkpoint.pth.tar")

    meta_raw = export_weights(ckpt, tmp_path / "raw.pth")
    meta_ema = export_weights(ckpt, tmp_path / "ema.pth", ema=True)
    assert meta_raw["best_prec1"] == 77.25 and meta_raw["which"] == "state_dict"
    assert meta_ema["which"] == "state_dict_ema"

    out_raw = torch.load(tmp_path / "raw.pth", map_location="cpu", weights_only=True)
    out_ema = torch.load(tmp_path / "ema.pth", map_location="cpu", weights_only=True)
    for out, expected in ((out_raw, raw), (out_ema, ema)):
        assert isinstance(out, dict)
        assert all(isinstance(v, torch.Tensor) for v in out.values())
        assert not any(k.startswith(("module.", "_orig_mod.")) for k in out)
        assert list(out) == list(expected)
        for k, v in expected.items():
            assert torch.equal(out[k], v), k
    assert any(not torch.equal(out_raw[k], out_ema[k]) for k in out_raw)

    # The exported file is a plain weights file the loader accepts.
    assert_same_weights(create_model(ARCH, pretrained=tmp_path / "ema.pth", num_classes=NUM_CLASSES), ema)


def test_export_weights_refuses_plain_weights(tmp_path, source):
    path = save(source[1], tmp_path / "weights.pth")
    with pytest.raises(UserError) as err:
        export_weights(path, tmp_path / "out.pth")
    assert "plain weights" in single_line(err)
    assert not (tmp_path / "out.pth").exists()


def test_export_weights_ema_missing(tmp_path, source):
    ckpt = save(training_checkpoint(source[1]), tmp_path / "checkpoint.pth.tar")
    with pytest.raises(UserError) as err:
        export_weights(ckpt, tmp_path / "out.pth", ema=True)
    single_line(err)
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.parametrize("spelling", ["./checkpoint.pth.tar", "symlink", "hardlink"])
def test_checkpoint2model_refuses_to_overwrite_its_checkpoint(spelling, tmp_path, source):
    ckpt = save(training_checkpoint(source[1]), tmp_path / "checkpoint.pth.tar")
    before = ckpt.read_bytes()
    if spelling == "symlink":
        (tmp_path / "link.pth").symlink_to(ckpt)
        spelling = "link.pth"
    elif spelling == "hardlink":
        (tmp_path / "hard.pth").hardlink_to(ckpt)
        spelling = "hard.pth"
    proc = run_script(REPO / "efficientnet" / "checkpoint2model.py", "--checkpoint-path", "checkpoint.pth.tar",
                      "--weight-path", spelling, cwd=tmp_path)
    assert_one_line_error(proc, f"{spelling} is the checkpoint checkpoint.pth.tar itself",
                          "would replace the training checkpoint")
    assert ckpt.read_bytes() == before


# --- published (NGC) weights from the hub cache -------------------------------------------------------


def test_pretrained_true_uses_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    info = get_model_info(ARCH)
    assert info.weights_url and info.weights_url.startswith("https://api.ngc.nvidia.com/")

    with pytest.raises(UserError) as err:
        create_model(ARCH, pretrained=True)
    msg = single_line(err)
    assert info.weights_url in msg

    # Published files use the old `layerN.` names and 1000 classes.
    sd = perturbed(make(8, num_classes=1000))
    ngc = {re.sub(r"^layers\.(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}.", k): v for k, v in sd.items()}
    cache = tmp_path / "checkpoints" / info.weights_url.rsplit("/", 1)[-1]
    cache.parent.mkdir(parents=True)
    save(ngc, cache)
    assert_same_weights(create_model(ARCH, pretrained=True), sd)


def test_pretrained_true_without_published_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(UserError) as err:
        create_model("efficientnet-b1", pretrained=True)
    assert "efficientnet-b1" in single_line(err)


# --- the checkpoint2model command ---------------------------------------------------------------------


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "efficientnet/checkpoint2model.py", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_checkpoint2model_cli(tmp_path, source, other_weights):
    ckpt = save(training_checkpoint(source[1], other_weights), tmp_path / "checkpoint.pth.tar")
    out = tmp_path / "model.pth"
    proc = run_cli("--checkpoint-path", ckpt, "--weight-path", out, "--ema")
    assert proc.returncode == 0, proc.stderr
    assert "Loaded model, acc : 77.25" in proc.stdout.splitlines()
    weights = torch.load(out, map_location="cpu", weights_only=True)
    assert list(weights) == list(other_weights)
    assert all(torch.equal(weights[k], v) for k, v in other_weights.items())


def test_checkpoint2model_cli_missing_checkpoint(tmp_path):
    proc = run_cli("--checkpoint-path", tmp_path / "missing.pth.tar", "--weight-path", tmp_path / "model.pth")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "missing.pth.tar" in lines[0]
    assert not (tmp_path / "model.pth").exists()


@pytest.mark.parametrize("kind", ["plain", "text", "list"])
def test_checkpoint2model_cli_bad_inputs(tmp_path, source, kind):
    path = tmp_path / "input.pth"
    if kind == "plain":
        save(source[1], path)
    elif kind == "text":
        path.write_text("not\na\ncheckpoint\n")
    else:
        save([1, 2, 3], path)
    proc = run_cli("--checkpoint-path", path, "--weight-path", tmp_path / "model.pth")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "model.pth").exists()


# --- files that are not checkpoints, through the command lines ---------------------------------------------------


def not_a_checkpoint(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.pth"
    if kind == "directory":
        path.mkdir()
    elif kind == "random":
        path.write_bytes(b"\x00" + os.urandom(4096))
    elif kind == "text":
        path.write_text("epoch: 3\nbest: 0.9\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save({"w": torch.ones(64)}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not a checkpoint")
    elif kind == "object":
        torch.save({"parser": argparse.ArgumentParser}, path)
    return path


WHAT_IT_IS = {
    "directory": "it is a directory, not a checkpoint file",
    "random": "it is not a PyTorch checkpoint (not a zip archive or legacy pickle)",
    "text": "it is not a PyTorch checkpoint (not a zip archive or legacy pickle)",
    "empty": "the file is empty",
    "truncated": "its zip archive is damaged or truncated",
    "zip": "it is a zip archive, but not a readable PyTorch checkpoint",
    "object": "it holds a pickled argparse.ArgumentParser, and only tensors and plain containers are loaded",
}


def cli_reading(entry: str, path: Path, tmp_path: Path) -> tuple:
    from efficientnet import classify
    from efficientnet import main as effnet_main

    image = tmp_path / "image.jpg"
    if entry == "classify.py --weights":
        from PIL import Image

        Image.new("RGB", (16, 16)).save(image)
        return classify.main, ["--weights", path, "--image", image, "--cpu"]
    flag = entry.split()[-1]
    return effnet_main.main, [tmp_path, flag, path, "--workspace", tmp_path / "ws", "--cpu"]


@pytest.mark.parametrize("entry", ["classify.py --weights", "main.py --resume", "main.py --pretrained-from-file"])
@pytest.mark.parametrize("kind", list(WHAT_IT_IS))
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(entry, kind, tmp_path, capsys):
    path = not_a_checkpoint(kind, tmp_path)
    main, argv = cli_reading(entry, path, tmp_path)
    proc = run_in_process(capsys, main, *argv)
    assert_one_line_error(proc, f"cannot read checkpoint {path}: {WHAT_IT_IS[kind]}")
    assert "weights_only" not in proc.stderr
