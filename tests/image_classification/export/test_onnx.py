"""ONNX export: both families' model2onnx.py from our checkpoints and plain state dicts, checked with onnxruntime."""
from __future__ import annotations

import re

import pytest
import torch

from common.cli_errors import run_cli
from tests.conftest import assert_one_line_error, run_script

onnx = pytest.importorskip("onnx", reason="onnx is not installed (the project's [onnx] extra)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the project's [onnx] extra)")

SIZE = 64
CLASSES = [f"class_{i}" for i in range(10)]
SCRIPTS = {"efficientnet-b0": "efficientnet/model2onnx.py", "gpunet-0": "gpunet/model2onnx.py"}
DIFF_LINE = re.compile(r"^max abs difference vs PyTorch: (\S+)", re.MULTILINE)


def make_model(arch: str) -> torch.nn.Module:
    """A 10-class model whose outputs are far from zero: random BN statistics and a scaled classifier, so that an
    export with the wrong weights or a wrong BN fold shows as a large difference."""
    from image_classification.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, num_classes=10).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        model.get_classifier().weight.mul_(30)
    return model


def save_checkpoint(path, arch: str, layout: str) -> torch.nn.Module:
    model = make_model(arch)
    if layout == "ours":
        torch.save({
            "arch": arch, "num_classes": 10, "class_names": CLASSES, "epoch": 3, "best_prec1": 50.0,
            "model_cfg": {**model.pretrained_cfg, "input_size": (3, SIZE, SIZE), "crop_pct": 0.9,
                          "interpolation": "bilinear"},
            "state_dict": model.state_dict(),
        }, path)
    else:
        torch.save(model.state_dict(), path)
    return model


def onnx_outputs(path, images: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"INPUT__0": images.numpy()})[0])


def assert_matches_pytorch(path, model, batches=(1, 5), atol=1e-4):
    for batch in batches:
        images = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(images)
        got = onnx_outputs(path, images)
        assert got.shape == expected.shape == (batch, 10)
        assert expected.abs().max() > 0.5  # a meaningful comparison, not of near-zero logits
        assert (got - expected).abs().max() < atol, (batch, (got - expected).abs().max())


def props(proto) -> dict:
    return {p.key: p.value for p in proto.metadata_props}


def printed_difference(stdout: str) -> float:
    match = DIFF_LINE.search(stdout)
    assert match, stdout
    return float(match.group(1))


@pytest.mark.parametrize("arch,layout", [
    ("efficientnet-b0", "ours"), ("efficientnet-b0", "plain"), ("gpunet-0", "ours"), ("gpunet-0", "plain"),
])
def test_cli_export_matches_pytorch(tmp_path, arch, layout):
    ckpt = tmp_path / "model_best.pth.tar"
    model = save_checkpoint(ckpt, arch, layout)
    if layout == "ours":
        # Architecture and image size come from the checkpoint; the output name from the checkpoint's name.
        proc = run_script(SCRIPTS[arch], "--pretrained-from-file", ckpt, "-b", 5)
        out = tmp_path / "model_best.onnx"
    else:
        out = tmp_path / "sub" / "exported.onnx"
        proc = run_script(SCRIPTS[arch], "--arch", arch, "--pretrained-from-file", ckpt, "--num-classes", 10,
                          "--image-size", SIZE, "-b", 5, "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning" not in proc.stderr
    assert printed_difference(proc.stdout) < 1e-4
    assert f"to {out}" in proc.stdout
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []  # no temporary left

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == ["INPUT__0"]
    assert [o.name for o in proto.graph.output] == ["OUTPUT__0"]
    for value in (proto.graph.input[0], proto.graph.output[0]):
        batch_dim = value.type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param and not batch_dim.HasField("dim_value")  # symbolic batch
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, SIZE, SIZE]
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)

    meta = props(proto)
    assert meta["arch"] == arch
    assert meta["input_size"] == f"[3, {SIZE}, {SIZE}]"
    assert meta["mean"] == "[0.485, 0.456, 0.406]" and meta["std"] == "[0.229, 0.224, 0.225]"
    assert meta["num_classes"] == "10"
    if layout == "ours":
        assert (meta["crop_pct"], meta["interpolation"]) == ("0.9", "bilinear")  # the checkpoint's preprocessing
        assert meta["class_names"] == '["' + '", "'.join(CLASSES) + '"]'
    else:
        assert meta["interpolation"] == "bicubic" and "class_names" not in meta
    assert_matches_pytorch(out, model)


def test_no_checkpoint_exports_random_weights_named_after_the_arch(tmp_path):
    from tests.conftest import REPO

    proc = run_script(REPO / "efficientnet/model2onnx.py", "--num-classes", 10, "--image-size", 32, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "random weights" in warnings[0], proc.stderr
    assert printed_difference(proc.stdout) < 1e-3
    proto = onnx.load(str(tmp_path / "efficientnet-b0.onnx"))
    assert props(proto)["weights"] == "random"


def test_no_verify_skips_the_check_and_derives_the_name(tmp_path):
    ckpt = tmp_path / "weights.pth"
    save_checkpoint(ckpt, "gpunet-0", "plain")
    proc = run_script("gpunet/model2onnx.py", "--pretrained-from-file", ckpt, "--num-classes", 10,
                      "--image-size", SIZE, "--no-verify")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max abs difference" not in proc.stdout
    onnx.checker.check_model(onnx.load(str(tmp_path / "weights.onnx")))


@pytest.mark.parametrize("script,args,fragments", [
    ("efficientnet/model2onnx.py", ["--pretrained-from-file", "missing.pth.tar"], ["checkpoint not found"]),
    ("efficientnet/model2onnx.py", ["--arch", "efficientnet-b99"], ["unknown model"]),
    ("efficientnet/model2onnx.py", ["--arch", "gpunet-0"], ["exports efficientnet models", "gpunet/model2onnx.py"]),
    ("gpunet/model2onnx.py", ["--arch", "efficientnet_b0"], ["exports gpunet models", "efficientnet/model2onnx.py"]),
    ("gpunet/model2onnx.py", ["--opset", "13"], ["opset must be between 17"]),
    ("efficientnet/model2onnx.py", ["--precision", "int4"], ["invalid choice"]),
])
def test_cli_errors_are_one_line(tmp_path, script, args, fragments):
    args = [str(tmp_path / a) if a.endswith(".pth.tar") else a for a in args]
    assert_one_line_error(run_script(script, *args), *fragments)


def test_wrong_family_taken_from_the_checkpoint(tmp_path):
    ckpt = tmp_path / "b0.pth.tar"
    save_checkpoint(ckpt, "efficientnet-b0", "ours")
    proc = run_script("gpunet/model2onnx.py", "--pretrained-from-file", ckpt)
    assert_one_line_error(proc, "efficientnet-b0 is not one", "efficientnet/model2onnx.py")
    assert not (tmp_path / "b0.onnx").exists()


# --- in process: the shared entry point and the API ---------------------------------------------------------------


def run_main(module, argv, capsys) -> tuple[int, str, str]:
    try:
        run_cli(module.main, [str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_failed_check_is_one_line_and_writes_nothing(tmp_path, capsys):
    from efficientnet import model2onnx

    ckpt = tmp_path / "m.pth"
    save_checkpoint(ckpt, "efficientnet-b0", "plain")
    out = tmp_path / "m.onnx"
    code, stdout, stderr = run_main(model2onnx, ["--pretrained-from-file", ckpt, "--num-classes", 10,
                                                 "--image-size", SIZE, "--atol", 0, "-o", out], capsys)
    if code == 0:
        pytest.skip("onnxruntime and PyTorch agreed bit for bit: a zero tolerance cannot fail here")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "max abs difference" in lines[0], stderr
    assert "not written" in lines[0] and not out.exists()


def test_missing_onnxruntime_skips_the_check(tmp_path, capsys, monkeypatch):
    import sys

    from gpunet import model2onnx

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, stdout, stderr = run_main(model2onnx, ["--num-classes", 10, "--image-size", 32, "-o",
                                                 tmp_path / "g.onnx"], capsys)
    assert code == 0, stderr
    assert "onnxruntime is not installed" in stderr and "max abs difference" not in stdout
    assert (tmp_path / "g.onnx").is_file()


def test_fold_bn(tmp_path, capsys):
    from efficientnet import model2onnx

    ckpt = tmp_path / "m.pth.tar"
    model = save_checkpoint(ckpt, "efficientnet-b0", "ours")
    code, stdout, stderr = run_main(model2onnx, ["--pretrained-from-file", ckpt, "--fold-bn", "--trt"], capsys)
    try:
        from image_classification.inference.fast import fold_batchnorm  # noqa: F401
    except ImportError:
        assert code == 2 and "--fold-bn needs" in stderr
        return
    assert code == 0, stderr
    assert printed_difference(stdout) < 1e-4
    assert_matches_pytorch(tmp_path / "m.onnx", model)  # folded and conv-SE graph, same function


def test_ema_weights_and_arch_mismatch(tmp_path, capsys):
    from efficientnet import model2onnx

    raw, ema = make_model("efficientnet-b0"), make_model("efficientnet-b0")
    with torch.no_grad():
        ema.get_classifier().bias.add_(1.0)
    ckpt = tmp_path / "ema.pth.tar"
    torch.save({"arch": "efficientnet-b0", "state_dict": raw.state_dict(), "state_dict_ema": ema.state_dict()}, ckpt)
    code, stdout, stderr = run_main(model2onnx, ["--pretrained-from-file", ckpt, "--ema", "--image-size", SIZE,
                                                 "--no-verify"], capsys)
    assert code == 0, stderr
    assert props(onnx.load(str(tmp_path / "ema.onnx")))["weights"] == "state_dict_ema"
    assert_matches_pytorch(tmp_path / "ema.onnx", ema)

    code, stdout, stderr = run_main(model2onnx, ["--pretrained-from-file", ckpt, "--arch", "efficientnet-b1"], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "pass --arch efficientnet-b0" in stderr, stderr


def test_api_static_batch_metadata_and_no_side_effects(tmp_path):
    from image_classification.export.onnx import VerificationError, export_onnx, verify_onnx

    model = make_model("efficientnet-b0").train()
    path = export_onnx(model, tmp_path / "static.onnx", image_size=SIZE, batch_size=3, dynamic_batch=False,
                       metadata={"class_names": CLASSES, "note": "test"})
    assert model.training and next(model.parameters()).dtype == torch.float32  # the caller's model untouched
    proto = onnx.load(str(path))
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [3, 3, SIZE, SIZE]
    meta = props(proto)
    assert meta["note"] == "test" and meta["arch"] == "efficientnet-b0"
    assert verify_onnx(path, model.eval(), image_size=SIZE, batch_sizes=(3,)) < 1e-4

    other = make_model("efficientnet-b0")
    with torch.no_grad():
        other.get_classifier().bias.add_(1.0)
    with pytest.raises(VerificationError, match="max abs difference") as info:
        verify_onnx(path, other, image_size=SIZE, batch_sizes=(3,))
    assert info.value.max_abs_diff > 0.5


def test_api_fp16_export(tmp_path):
    from image_classification.export.onnx import export_onnx, prepare_model, verify_onnx

    model = make_model("gpunet-0")
    path = export_onnx(model, tmp_path / "half.onnx", image_size=32, precision="fp16")
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert props(proto)["precision"] == "fp16"
    assert verify_onnx(path, prepare_model(model, precision="fp16"), image_size=32) < 1e-2


@pytest.mark.parametrize("kwargs,fragment", [
    ({"opset": 13}, "opset must be between 17"),
    ({"precision": "bf16"}, "precision must be one of"),
    ({"batch_size": 0}, "batch size must be at least 1"),
])
def test_api_rejects_bad_arguments(tmp_path, kwargs, fragment):
    from common.cli_errors import UserError
    from image_classification.export.onnx import export_onnx

    with pytest.raises(UserError, match=fragment):
        export_onnx(torch.nn.Conv2d(3, 4, 3), tmp_path / "x.onnx", image_size=8, **kwargs)
    assert not (tmp_path / "x.onnx").exists()


def test_default_output_path():
    from pathlib import Path

    from image_classification.export.onnx import default_output_path

    assert default_output_path("runs/x/model_best.pth.tar", "efficientnet-b0") == Path("runs/x/model_best.onnx")
    assert default_output_path("w.pth", "gpunet-0") == Path("w.onnx")
    assert default_output_path("w", "gpunet-0") == Path("w.onnx")
    assert default_output_path(None, "gpunet-0") == Path("gpunet-0.onnx")


# --------------------------------------------------------------------------------------------- upstream's model flags

@pytest.fixture
def built_models(monkeypatch) -> list:
    """The models model2onnx.py builds, as the one loader returns them."""
    from image_classification.models import loading

    built, real = [], loading.load_checkpoint_model

    def spy(*args, **kwargs):
        loaded = real(*args, **kwargs)
        built.append(loaded.model)
        return loaded

    monkeypatch.setattr(loading, "load_checkpoint_model", spy)
    return built


def test_upstream_model_flags_reach_the_model(tmp_path, capsys, built_models):
    """efficientnet/model2onnx.py takes upstream's model flags: --num_classes without a checkpoint gives that many
    outputs, and the others shape the network that is exported."""
    from efficientnet import model2onnx

    out = tmp_path / "b0.onnx"
    model2onnx.main(["--num_classes", "10", "--bn_epsilon", "1e-5", "--bn_momentum", "0.2", "--dropout", "0.5",
                     "--survival_prob", "0.9", "--conv_init", "fan_out", "--trt", "--image-size", "32",
                     "--output", str(out)])
    proto = onnx.load(str(out))
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim[1:]] == [10]
    assert props(proto)["num_classes"] == "10"
    (model,) = built_models
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {m.eps for m in norms} == {1e-5} and {m.momentum for m in norms} == {0.2}
    assert model.classifier.dropout.p == 0.5
    assert model.layers[1].block0.se.squeeze.weight.dim() == 4  # --trt: the 1x1-conv SE
    survival = [m.survival_prob for m in model.modules() if hasattr(m, "survival_prob")]
    assert survival and 0.9 <= min(survival) < 1.0  # b0's default is 1.0 (no stochastic depth)
    # fan_out: kaiming std sqrt(2 / out_channels) = 0.14 for this 16 -> 96 1x1 conv (fan_in's would be 0.35)
    assert model.layers[1].block0.expand.conv.weight.std().item() == pytest.approx((2 / 96) ** 0.5, rel=0.2)


def test_model_flags_default_to_the_checkpoints(tmp_path, capsys, built_models):
    """A checkpoint's recorded model flags shape the export unless the command line says otherwise."""
    from efficientnet import model2onnx
    from image_classification.models import create_model

    model = create_model("efficientnet-b0", num_classes=10, bn_epsilon=1e-4)
    ckpt = tmp_path / "ckpt.pth.tar"
    torch.save({"arch": "efficientnet-b0", "num_classes": 10, "model_kwargs": {"bn_epsilon": 1e-4},
                "state_dict": model.state_dict()}, ckpt)
    for extra, eps in (([], 1e-4), (["--bn_epsilon", "1e-5"], 1e-5)):
        model2onnx.main(["--pretrained-from-file", str(ckpt), "--image-size", "32", "--no-verify",
                         "--output", str(tmp_path / "x.onnx"), *extra])
        assert {m.eps for m in built_models.pop().modules() if isinstance(m, torch.nn.BatchNorm2d)} == {eps}


@pytest.mark.parametrize("script,args,fragments", [
    ("gpunet/model2onnx.py", ["--bn_epsilon", "1e-5"], ["unrecognized arguments: --bn_epsilon"]),
    ("efficientnet/model2onnx.py", ["--trt", "maybe"], ["--trt", "'maybe'"]),
    ("efficientnet/model2onnx.py", ["--arch", "efficientnet-quant-b0", "--trt", "false"], ["--trt false"]),
])
def test_model_flag_errors_are_one_line(tmp_path, capsys, script, args, fragments):
    import runpy

    main = runpy.run_path(script)["main"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [*args, "--image-size", "32", "--output", str(tmp_path / "x.onnx")])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # The last line is the one error (a random-weights warning may come before it), no traceback.
    assert lines[-1].startswith("error: ") and sum(line.startswith("error: ") for line in lines) == 1, lines
    assert not any("Traceback" in line for line in lines)
    for fragment in fragments:
        assert fragment in lines[-1]
