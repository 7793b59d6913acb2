"""classify.py (efficientnet/ and gpunet/ entry points over image_classification.inference.classify), on the CPU:
a model trained on the 32 px digits must name held-out digits; checkpoints of several kinds; inputs and errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from common.cli_errors import UserError
from image_classification.inference.classify import (
    expand_inputs,
    imagenet_class_names,
    load_classifier,
    read_labels,
)
from image_classification.models import create_model, get_model_info
from tests.conftest import REPO, assert_one_line_error, run_in_process, run_script

EFFICIENTNET = REPO / "efficientnet" / "classify.py"
GPUNET = REPO / "gpunet" / "classify.py"
DIGITS = [str(d) for d in range(10)]


def cli(capsys, *argv):
    """efficientnet/classify.py's main in this process: faster than a subprocess for the many error cases."""
    from efficientnet.classify import main

    return run_in_process(capsys, main, *argv)


def parse_text(stdout: str) -> list[tuple[str, list[tuple[str, float]]]]:
    """[(path, [(class, percent), ...])] from the text output: a path line, then `<class>: xx.x%` lines."""
    out = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        if line.endswith("%") and ": " in line and out:
            name, _, value = line.rpartition(": ")
            out[-1][1].append((name, float(value[:-1])))
        else:
            out.append((line, []))
    return out


@pytest.fixture(scope="module")
def digits_checkpoint(trained_digits) -> Path:
    return trained_digits[1] / "model_best.pth.tar"


@pytest.fixture(scope="module")
def held_out(digits_root) -> list[tuple[str, str]]:
    """(path, true digit): the first two validation images of every class, 20 in all."""
    return [(str(p), d) for d in DIGITS for p in sorted((digits_root / "val" / d).glob("*.jpg"))[:2]]


@pytest.fixture(scope="module")
def imagenet_checkpoint(tmp_path_factory) -> Path:
    """A random 1000-class EfficientNet-B0 as a plain state dict (the layout of upstream's exported weights)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("imagenet") / "b0_random.pth"
    torch.save(create_model("efficientnet-b0", num_classes=1000).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def gpunet_checkpoint(tmp_path_factory) -> Path:
    """A fresh GPUNet-0 with 10 classes in this project's checkpoint layout, preprocessing at 64 px."""
    torch.manual_seed(0)
    info = get_model_info("gpunet-0")
    model = create_model("gpunet-0", num_classes=10)
    path = tmp_path_factory.mktemp("gpunet") / "gpunet0_digits.pth.tar"
    torch.save({"arch": "gpunet-0", "num_classes": 10, "class_names": [f"digit-{d}" for d in DIGITS],
                "state_dict": model.state_dict(),
                "model_cfg": {**info.metadata(), "input_size": (3, 64, 64), "crop_pct": 0.875}}, path)
    return path


# --- the trained model names the digits ---------------------------------------------------------------------------


def test_trained_model_names_held_out_digits_text_and_json(digits_checkpoint, held_out):
    images = [arg for path, _ in held_out for arg in ("--image", path)]
    text = run_script(EFFICIENTNET, "--weights", digits_checkpoint, *images, "--topk", 10, "--cpu", "-b", 8)
    assert text.returncode == 0, text.stderr[-2000:]
    assert text.stderr.strip() == ""
    results = parse_text(text.stdout)
    assert [path for path, _ in results] == [path for path, _ in held_out]
    right = 0
    for (_, preds), (_, truth) in zip(results, held_out):
        assert len(preds) == 10
        assert sorted(name for name, _ in preds) == DIGITS  # the folder names, from the checkpoint
        percents = [p for _, p in preds]
        assert percents == sorted(percents, reverse=True)
        assert sum(percents) == pytest.approx(100.0, abs=0.6)  # ten values rounded to 0.1
        right += preds[0][0] == truth
    assert right >= 18, f"only {right}/20 held-out digits right"

    js = run_script(EFFICIENTNET, "--weights", digits_checkpoint, *images, "--topk", 10, "--cpu", "--json")
    assert js.returncode == 0, js.stderr[-2000:]
    documents = json.loads(js.stdout)
    assert [d["image"] for d in documents] == [path for path, _ in held_out]
    for doc, (_, preds) in zip(documents, results):
        # Another batch size may reorder near-ties in the tail, so compare class by class.
        assert doc["predictions"][0]["class"] == preds[0][0]
        percents = dict(preds)
        assert {p["class"] for p in doc["predictions"]} == set(percents)
        for p in doc["predictions"]:
            assert p["index"] == int(p["class"])
            assert 100.0 * p["probability"] == pytest.approx(percents[p["class"]], abs=0.06)


def test_default_topk_is_five(digits_checkpoint, held_out):
    proc = run_script(GPUNET, "--pretrained-from-file", digits_checkpoint, "--image", held_out[0][0], "--cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    [(path, preds)] = parse_text(proc.stdout)
    assert path == held_out[0][0] and len(preds) == 5


def test_api_preprocessing_from_checkpoint_and_overrides(digits_checkpoint, held_out):
    from PIL import Image

    clf = load_classifier(weights=digits_checkpoint, device="cpu")
    assert clf.arch == "efficientnet-b0" and clf.num_classes == 10 and clf.class_names == DIGITS
    prep = clf.preprocessing
    # Trained and validated at 32 px with bilinear resizing: not the registry's 224 px bicubic.
    assert (prep.image_size, prep.interpolation) == (32, "bilinear")
    assert prep.resize_size == round(32 / prep.crop_pct)
    assert clf.precision == "fp32" and not clf.fast
    assert clf.transform(Image.open(held_out[0][0]).convert("RGB")).shape == (3, 32, 32)

    big = load_classifier("efficientnet_b0", digits_checkpoint, device="cpu", image_size=48, crop_pct=0.5,
                          weights_kind="raw")
    assert (big.preprocessing.image_size, big.preprocessing.crop_pct, big.preprocessing.resize_size) == (48, 0.5, 96)
    assert big.load_image(held_out[0][0]).shape == (3, 48, 48)

    pil = Image.open(held_out[1][0])
    results = clf.predict([held_out[0][0], pil], topk=3)
    assert len(results) == 2 and all(len(r) == 3 for r in results)
    name, index, prob = results[0][0]
    assert name == DIGITS[index] and 0.0 < prob <= 1.0
    assert [r[0][0] for r in results] == [held_out[0][1], held_out[1][1]]
    assert clf.predict(held_out[0][0], topk=1)[0][0][0] == held_out[0][1]
    with pytest.raises(UserError, match="topk 11 is more than the model's 10 classes"):
        clf.predict(pil, topk=11)
    with pytest.raises(UserError, match="cannot read"):
        clf.predict("/nonexistent/image.jpg")


def test_image_size_override_changes_the_input(digits_checkpoint, held_out):
    args = ("--weights", digits_checkpoint, "--image", held_out[0][0], "--cpu", "--json", "--topk", 10)
    default = json.loads(run_script(EFFICIENTNET, *args).stdout)
    resized = run_script(EFFICIENTNET, *args, "--image-size", 96, "--crop-pct", 0.5)
    assert resized.returncode == 0, resized.stderr[-2000:]
    probs = [p["probability"] for p in json.loads(resized.stdout)[0]["predictions"]]
    assert sorted(probs) != pytest.approx(sorted(p["probability"] for p in default[0]["predictions"]), abs=1e-4)


def test_labels_file_overrides_names(digits_checkpoint, held_out, tmp_path, capsys):
    names = [f"digit {d}" for d in DIGITS]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "labels.json").write_text(json.dumps(names))
    assert read_labels(tmp_path / "labels.txt") == names == read_labels(tmp_path / "labels.json")
    proc = run_script(EFFICIENTNET, "--weights", digits_checkpoint, "--image", held_out[0][0], "--cpu",
                      "--labels", tmp_path / "labels.json", "--topk", 10)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [(_, preds)] = parse_text(proc.stdout)
    assert sorted(n for n, _ in preds) == sorted(names)
    (tmp_path / "short.txt").write_text("a\nb\n")
    bad = cli(capsys, "--weights", digits_checkpoint, "--image", held_out[0][0], "--cpu",
              "--labels", tmp_path / "short.txt")
    assert_one_line_error(bad, "2 names", "10 classes")


# --- 1000 classes: ImageNet's names, the registry's preprocessing -------------------------------------------------


def test_imagenet_model_prints_imagenet_names(imagenet_checkpoint, held_out):
    imagenet = imagenet_class_names()
    assert len(imagenet) == 1000 and imagenet[0] == "tench"
    proc = run_script(EFFICIENTNET, "--arch", "efficientnet-b0", "--weights", imagenet_checkpoint,
                      "--image", held_out[0][0], "--image", held_out[5][0], "--cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = parse_text(proc.stdout)
    assert len(results) == 2
    for _, preds in results:
        assert len(preds) == 5 and all(name in imagenet for name, _ in preds)

    clf = load_classifier("efficientnet-b0", imagenet_checkpoint, device="cpu")
    assert clf.class_names == imagenet
    prep = clf.preprocessing
    assert (prep.image_size, prep.interpolation, prep.resize_size) == (224, "bicubic", 256)


def test_plain_state_dict_needs_arch(imagenet_checkpoint, held_out):
    proc = run_script(EFFICIENTNET, "--weights", imagenet_checkpoint, "--image", held_out[0][0], "--cpu")
    assert_one_line_error(proc, "does not name its architecture", "--arch")


# --- inputs: directories, globs, unreadable files ----------------------------------------------------------------


def test_directory_and_glob(digits_checkpoint, digits_root):
    folder = digits_root / "val" / "3"
    expected_dir = sorted(str(p) for p in folder.glob("*.jpg"))
    expected_glob = sorted(str(p) for p in (digits_root / "val" / "7").glob("00*.jpg"))
    assert expected_dir and expected_glob
    assert expand_inputs([str(folder)]) == expected_dir
    pattern = str(digits_root / "val" / "7" / "00*.jpg")
    proc = run_script(EFFICIENTNET, "--weights", digits_checkpoint, "--image", folder, "--image", pattern,
                      "--cpu", "--topk", 1, "-b", 16)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = parse_text(proc.stdout)
    assert [p for p, _ in results] == expected_dir + expected_glob
    tops = [preds[0][0] for _, preds in results]
    assert tops[:len(expected_dir)].count("3") >= 0.8 * len(expected_dir)
    assert tops[len(expected_dir):].count("7") >= 0.8 * len(expected_glob)


def test_recursive_directory(digits_root, tmp_path):
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    shutil.copy(digits_root / "val" / "1" / sorted(p.name for p in (digits_root / "val" / "1").iterdir())[0],
                nested / "x.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    assert expand_inputs([str(tmp_path)]) == [str(nested / "x.jpg")]


def test_a_symlink_loop_among_the_images_is_one_line(digits_root, tmp_path, capsys):
    folder = tmp_path / "images"
    shutil.copytree(digits_root / "val" / "1", folder)
    (folder / "back").symlink_to(folder)
    assert_one_line_error(cli(capsys, "--arch", "efficientnet-b0", "--pretrained", "--image", folder, "--cpu"),
                          f"{folder / 'back'} points to", "symbolic link loop")


def test_unreadable_images_are_skipped(digits_checkpoint, held_out, tmp_path):
    good = [held_out[0][0], held_out[4][0]]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("this is not a PNG")
    missing = tmp_path / "missing.jpg"
    proc = run_script(EFFICIENTNET, "--weights", digits_checkpoint, "--image", good[0], empty, text, missing,
                      "--image", good[1], "--cpu", "--topk", 2, "-b", 2)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert [p for p, _ in parse_text(proc.stdout)] == good
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 3, proc.stderr
    for line, path, reason in zip(errors, (empty, text, missing), ("empty file", "not an image", "no such file")):
        assert line.startswith(f"error: cannot read {path}: {reason}"), line

    js = run_script(EFFICIENTNET, "--weights", digits_checkpoint, "--image", good[0], text, "--cpu", "--json")
    assert js.returncode == 1
    assert [d["image"] for d in json.loads(js.stdout)] == [good[0]]
    assert len(js.stderr.strip().splitlines()) == 1 and js.stderr.startswith(f"error: cannot read {text}: ")


def test_no_images_is_an_error(digits_checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    assert_one_line_error(run_script(EFFICIENTNET, "--weights", digits_checkpoint, "--image", tmp_path / "empty",
                                     "--cpu"), "no images in")
    assert_one_line_error(cli(capsys, "--weights", digits_checkpoint, "--image", tmp_path / "nothing*.jpg", "--cpu"),
                          "no image matches")
    assert_one_line_error(cli(capsys, "--weights", digits_checkpoint, "--cpu"), "--image")


# --- bad input: one line, exit 2 ----------------------------------------------------------------------------------


def test_bad_model_arguments(digits_checkpoint, gpunet_checkpoint, held_out, tmp_path, capsys):
    image = held_out[0][0]
    assert_one_line_error(run_script(EFFICIENTNET, "--weights", tmp_path / "nope.pth.tar", "--image", image, "--cpu"),
                          "checkpoint not found")
    assert_one_line_error(cli(capsys, "--arch", "efficientnet-b99", "--weights", digits_checkpoint,
                              "--image", image, "--cpu"), "unknown model")
    # A checkpoint that names another architecture, and a plain state dict of another architecture.
    assert_one_line_error(cli(capsys, "--arch", "efficientnet-b0", "--weights", gpunet_checkpoint,
                              "--image", image, "--cpu"), "gpunet-0 weights, not efficientnet-b0")
    plain = tmp_path / "gpunet_plain.pth"
    torch.save(torch.load(gpunet_checkpoint, weights_only=True)["state_dict"], plain)
    assert_one_line_error(cli(capsys, "--arch", "efficientnet-b0", "--weights", plain, "--image", image, "--cpu"),
                          "does not fit efficientnet-b0")
    not_a_checkpoint = tmp_path / "junk.pth"
    not_a_checkpoint.write_text("junk")
    assert_one_line_error(cli(capsys, "--weights", not_a_checkpoint, "--image", image, "--cpu"),
                          "cannot read checkpoint")
    assert_one_line_error(cli(capsys, "--image", image, "--cpu"), "no weights given")


def test_bad_run_arguments(digits_checkpoint, held_out, capsys):
    base = ("--weights", digits_checkpoint, "--image", held_out[0][0], "--cpu")
    assert_one_line_error(run_script(EFFICIENTNET, *base, "--precision", "AMP"), "AMP", "GPU")
    assert_one_line_error(cli(capsys, *base, "--precision", "amp"), "AMP", "GPU")
    assert_one_line_error(cli(capsys, *base, "--topk", 11), "topk 11", "10 classes")
    assert_one_line_error(cli(capsys, *base, "--topk", 0), "--topk")
    assert_one_line_error(cli(capsys, *base, "--crop-pct", 1.5), "crop_pct")
    assert_one_line_error(cli(capsys, *base, "--weights-kind", "ema"), "no EMA weights")
    assert_one_line_error(cli(capsys, *base, "--compile"), "--compile")  # the fast path compiles by default


def test_pretrained_needs_cached_file(held_out, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "TORCH_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(EFFICIENTNET), "--arch", "efficientnet-b0", "--pretrained",
                           "--image", held_out[0][0], "--cpu"], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=300)
    assert_one_line_error(proc, "not cached")


# --- GPUNet ---------------------------------------------------------------------------------------------------------


def test_gpunet_classify(gpunet_checkpoint, held_out):
    images = [arg for path, _ in held_out[::4] for arg in ("--image", path)]
    proc = run_script(GPUNET, "--weights", gpunet_checkpoint, *images, "--cpu", "--topk", 10)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = parse_text(proc.stdout)
    assert [p for p, _ in results] == [path for path, _ in held_out[::4]]
    for _, preds in results:
        assert sorted(n for n, _ in preds) == sorted(f"digit-{d}" for d in DIGITS)
        assert sum(p for _, p in preds) == pytest.approx(100.0, abs=0.6)
    js = run_script(GPUNET, "--arch", "gpunet_0", "--weights", gpunet_checkpoint, *images[:2], "--cpu", "--json")
    assert js.returncode == 0, js.stderr[-2000:]
    [doc] = json.loads(js.stdout)
    percents = dict(results[0][1])
    assert len(doc["predictions"]) == 5
    for p in doc["predictions"]:
        assert 100.0 * p["probability"] == pytest.approx(percents[p["class"]], abs=0.06)

    clf = load_classifier(weights=gpunet_checkpoint, device="cpu")
    assert clf.arch == "gpunet-0" and clf.preprocessing.image_size == 64
    assert clf.preprocessing.resize_size == round(64 / 0.875)


# --- upstream's model flags ---------------------------------------------------------------------------------------


@pytest.fixture
def classifiers(monkeypatch) -> list:
    """The Classifiers that classify.py builds."""
    from image_classification.inference import classify

    built, real = [], classify.load_classifier

    def spy(*args, **kwargs):
        classifier = real(*args, **kwargs)
        built.append(classifier)
        return classifier

    monkeypatch.setattr(classify, "load_classifier", spy)
    return built


def b0_checkpoint(path: Path, layout: str, **model_kwargs) -> Path:
    """A random 10-class EfficientNet-B0 (Linear SE unless model_kwargs say otherwise): a plain state dict, or this
    project's layout recording the class count and the model flags."""
    torch.manual_seed(0)
    model = create_model("efficientnet-b0", num_classes=10, **model_kwargs)
    if layout == "plain":
        torch.save(model.state_dict(), path)
    else:
        torch.save({"arch": "efficientnet-b0", "num_classes": 10, "model_kwargs": model_kwargs,
                    "state_dict": model.state_dict()}, path)
    return path


def batch_norms(model) -> list:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_upstream_model_flags_reach_the_model(held_out, tmp_path, capsys, classifiers):
    """efficientnet/classify.py takes upstream's model flags and builds the model with them: --trt turns the
    checkpoint's Linear SE weights into the 1x1-conv SE."""
    ckpt = b0_checkpoint(tmp_path / "b0.pth", "plain")
    proc = cli(capsys, "--arch", "efficientnet-b0", "--weights", ckpt, "--image", held_out[0][0], "--cpu",
               "--image-size", 32, "--num_classes", 10, "--bn_epsilon", 1e-5, "--bn_momentum", 0.2, "--trt",
               "--dropout", 0.5, "--survival_prob", 0.9, "--conv_init", "fan_out", "--json")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert len(result["predictions"]) == 5
    (classifier,) = classifiers
    model = classifier.model
    assert classifier.num_classes == 10
    assert {m.eps for m in batch_norms(model)} == {1e-5} and {m.momentum for m in batch_norms(model)} == {0.2}
    assert model.layers[1].block0.se.squeeze.weight.dim() == 4
    assert model.classifier.dropout.p == 0.5
    assert 0.9 <= min(m.survival_prob for m in model.modules() if hasattr(m, "survival_prob")) < 1.0


def test_model_flags_default_to_the_checkpoints(held_out, tmp_path, capsys, classifiers):
    ckpt = b0_checkpoint(tmp_path / "b0.pth.tar", "ours", bn_epsilon=1e-4, trt=True)
    base = ("--weights", ckpt, "--image", held_out[0][0], "--cpu", "--image-size", 32)
    for extra, eps in (((), 1e-4), (("--bn_epsilon", 1e-5), 1e-5)):
        assert cli(capsys, *base, *extra).returncode == 0
        model = classifiers.pop().model
        assert {m.eps for m in batch_norms(model)} == {eps}
        assert model.layers[1].block0.se.squeeze.weight.dim() == 4  # the checkpoint's trt=True


def test_num_classes_must_agree_with_the_checkpoint(held_out, tmp_path, capsys):
    base = ("--image", held_out[0][0], "--cpu", "--image-size", 32, "--num_classes", 5)
    plain = b0_checkpoint(tmp_path / "plain.pth", "plain")
    assert_one_line_error(cli(capsys, "--arch", "efficientnet-b0", "--weights", plain, *base),
                          "has 10 classes but --num_classes is 5")
    ours = b0_checkpoint(tmp_path / "ours.pth.tar", "ours")
    assert_one_line_error(cli(capsys, "--weights", ours, *base), "has 10 classes but --num_classes is 5")


def test_model_flags_of_the_other_family(gpunet_checkpoint, held_out, capsys, classifiers):
    image = ("--image", held_out[0][0], "--cpu", "--image-size", 32)
    assert_one_line_error(cli(capsys, "--weights", gpunet_checkpoint, *image, "--bn_epsilon", 1e-5),
                          "gpunet-0 has no model option 'bn_epsilon'")
    from gpunet.classify import main as gpunet_main

    assert_one_line_error(run_in_process(capsys, gpunet_main, "--weights", gpunet_checkpoint, *image, "--trt"),
                          "unrecognized arguments: --trt")
    proc = run_in_process(capsys, gpunet_main, "--weights", gpunet_checkpoint, *image, "--dropout", 0.3)
    assert proc.returncode == 0, proc.stderr
    assert classifiers[-1].model.head.dropout.p == 0.3
