"""gpunet/validate.py (timm's validate.py flags) and gpunet/eval.py on the 32 px digits, with untrained weights saved
in several checkpoint layouts; the reference numbers come from the data factory and `evaluate()` directly."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
import torch

from common.cli_errors import UserError
from image_classification.models import create_model, get_model_info
from image_classification.models.gpunet import to_upstream_state_dict
from tests.conftest import REPO, assert_one_line_error, run_script

VALIDATE = REPO / "gpunet" / "validate.py"
EVAL = REPO / "gpunet" / "eval.py"
RESULT_FIELDS = ("model", "top1", "top1_err", "top5", "top5_err", "param_count", "img_size", "crop_pct", "cropt_pct",
                 "interpolation", "average_ips", "loss", "images", "compute_latency")
FAST = ("--img-size", "32", "-j", "0", "-b", "128", "--cpu", "--log-freq", "0")


def val_loader(digits_root: Path):
    """The data factory's val loader with GPUNet-0's preprocessing at 32 px (what validate.py must reproduce)."""
    from image_classification.data.config import DataConfig
    from image_classification.data.loader import build_data

    info = get_model_info("gpunet-0")
    cfg = DataConfig(data=str(digits_root), batch_size=64, workers=0, interpolation="bicubic")
    return build_data(cfg, image_size=32, val_image_size=32, crop_pct=info.crop_pct, mean=info.mean, std=info.std,
                      device=torch.device("cpu"), need_train=False).val


def _model(seed: int, images: torch.Tensor):
    """Untrained GPUNet-0 whose BN statistics come from `images`, so its predictions vary with the input (with
    init statistics every image gets the same class, and top-1 would not tell two weight sets apart)."""
    torch.manual_seed(seed)
    model = create_model("gpunet-0", num_classes=10)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: the statistics of exactly these images
    with torch.no_grad():
        model.train()(images)
    return model.eval()


@pytest.fixture(scope="module")
def ckpts(digits_root, tmp_path_factory):
    """raw and ema weights, in three layouts: ours (plain), upstream's keys (NGC-like), timm training checkpoint."""
    d = tmp_path_factory.mktemp("ckpts")
    images = torch.cat([x for x, _ in val_loader(digits_root)])[::3]
    raw, ema = _model(0, images), _model(1, images)
    paths = {
        "plain": d / "plain.pth",
        "upstream": d / "upstream_keys.pth",
        "training": d / "training.pth.tar",
    }
    torch.save(raw.state_dict(), paths["plain"])
    torch.save(to_upstream_state_dict(raw), paths["upstream"])
    torch.save({"arch": "gpunet_0", "epoch": 3, "args": argparse.Namespace(model="gpunet_0"),
                "state_dict": {f"module.{k}": v for k, v in raw.state_dict().items()},
                "state_dict_ema": ema.state_dict(), "metric": 1.0}, paths["training"])
    return {"dir": d, "raw": raw, "ema": ema, **paths}


def reference(digits_root: Path, model) -> dict:
    from image_classification.inference.evaluate import evaluate

    return evaluate(model, val_loader(digits_root), device=torch.device("cpu"))


@pytest.fixture(scope="module")
def expected(digits_root, ckpts):
    return {"raw": reference(digits_root, ckpts["raw"]), "ema": reference(digits_root, ckpts["ema"])}


def run_validate(capsys, *argv):
    """validate.py's main in this process: (exit code, parsed --result JSON, stderr)."""
    from gpunet.validate import main

    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "--result\n" in out.out, out
    return rc, json.loads(out.out.split("--result\n", 1)[1]), out.err


def assert_matches(result: dict, ref: dict):
    assert result["top1"] == pytest.approx(ref["top1"], abs=1e-4)
    assert result["top5"] == pytest.approx(ref["top5"], abs=1e-4)
    assert result["loss"] == pytest.approx(ref["loss"], abs=1e-5)
    assert result["images"] == ref["images"]


def test_script_on_dataset_root_prints_timm_result(digits_root, ckpts, expected, tmp_path):
    report = tmp_path / "log.json"
    proc = run_script(VALIDATE, digits_root, "--model", "gpunet_0", "--checkpoint", ckpts["plain"], *FAST,
                      "--num-classes", 10, "--dllogger-name", report, "--results-file", tmp_path / "r.csv")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "--result" in lines
    result = json.loads(proc.stdout.split("--result\n", 1)[1])
    for field in RESULT_FIELDS:
        assert field in result, field
    assert result["model"] == "gpunet-0"
    assert result["img_size"] == 32 and result["crop_pct"] == result["cropt_pct"] == 1.0
    assert result["interpolation"] == "bicubic"
    assert result["param_count"] == round(sum(p.numel() for p in ckpts["raw"].parameters()) / 1e6, 2)
    assert result["top1_err"] == pytest.approx(100 - result["top1"], abs=1e-3)
    assert result["average_ips"] > 0 and result["compute_latency"] > 0
    assert_matches(result, expected["raw"])

    from common.dllogger import read_report

    logs = [r for r in read_report(report) if r["type"] == "LOG"]
    assert len(logs) == 1 and logs[0]["data"]["top1"] == result["top1"]
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["top1"]) == result["top1"]


@pytest.mark.parametrize("layout", ["plain", "upstream", "training"])
def test_val_folder_itself_and_every_layout(digits_root, ckpts, expected, capsys, layout):
    rc, result, _ = run_validate(capsys, digits_root / "val", "--model", "GPUNet-0", "--checkpoint", ckpts[layout],
                                 *FAST)
    assert rc == 0
    assert_matches(result, expected["raw"])  # without --use-ema, the raw state_dict (timm's default)
    assert result["weights"] == {"plain": "weights", "upstream": "weights", "training": "state_dict"}[layout]


def test_use_ema_picks_ema_weights(digits_root, ckpts, expected, capsys):
    assert expected["raw"]["top1"] != pytest.approx(expected["ema"]["top1"], abs=0.5)  # the two really differ
    _, ema, _ = run_validate(capsys, digits_root, "--checkpoint", ckpts["training"], "--use-ema", *FAST)
    assert ema["model"] == "gpunet-0"  # from the checkpoint's arch, no --model needed
    assert ema["weights"] == "state_dict_ema"
    assert_matches(ema, expected["ema"])


def test_use_ema_without_ema_weights_is_refused(digits_root, ckpts):
    from gpunet.validate import main

    with pytest.raises(UserError, match="has no EMA weights .* drop --use-ema"):
        main([str(digits_root), "--model", "gpunet_0", "--checkpoint", str(ckpts["plain"]), "--use-ema", *FAST])


def test_bulk_directory_reports_broken_checkpoint_and_fails_at_the_end(digits_root, ckpts, expected, tmp_path):
    bulk = tmp_path / "bulk"
    bulk.mkdir()
    for name in ("plain", "training"):
        (bulk / ckpts[name].name).write_bytes(ckpts[name].read_bytes())
    (bulk / "broken.pth.tar").write_bytes(b"this is not a checkpoint")
    (bulk / "notes.txt").write_text("ignored: neither .pth nor .pth.tar")
    work = tmp_path / "cwd"
    work.mkdir()
    proc = run_script(VALIDATE, digits_root, "--model", "gpunet_0", "--checkpoint", bulk, *FAST, cwd=work)
    assert proc.returncode == 1, proc.stderr
    assert "broken.pth.tar" in proc.stderr
    with open(work / "results-all.csv", newline="") as f:  # timm's default bulk file, in the current directory
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    broken = [r for r in rows if r["checkpoint"].endswith("broken.pth.tar")]
    good = [r for r in rows if not r["checkpoint"].endswith("broken.pth.tar")]
    assert len(broken) == 1 and broken[0]["error"] and not broken[0]["top1"]
    assert all(not r["error"] for r in good)
    for row in good:
        assert float(row["top1"]) == pytest.approx(expected["raw"]["top1"], abs=1e-4)
    results = json.loads(proc.stdout.split("--result\n", 1)[1])
    assert isinstance(results, list) and len(results) == 3


def test_bulk_glob(digits_root, ckpts, capsys, tmp_path):
    out = tmp_path / "glob.csv"
    rc, results, _ = run_validate(capsys, digits_root, "--model", "gpunet_0",
                                  "--checkpoint", f"{ckpts['dir']}/*.pth", *FAST, "--results-file", out)
    assert rc == 0
    assert sorted(Path(r["checkpoint"]).name for r in results) == ["plain.pth", "upstream_keys.pth"]
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_model_all_uses_only_cached_published_weights(digits_root, ckpts, capsys, tmp_path):
    from image_classification.inference.validate import published_weights_path
    from image_classification.models.checkpoint import cached_published_weights

    before = torch.hub.get_dir()
    try:
        torch.hub.set_dir(str(tmp_path / "hub"))
        with pytest.raises(UserError, match="nothing is downloaded"):
            run_validate(capsys, digits_root, "--model", "all", *FAST)
        info = get_model_info("gpunet-0")
        path = published_weights_path(info)
        path.parent.mkdir(parents=True)
        path.symlink_to(ckpts["plain"])
        assert cached_published_weights(info) == path  # the same file create_model(pretrained=True) would read
        rc, results, _ = run_validate(capsys, digits_root, "--model", "all", *FAST,
                                      "--results-file", tmp_path / "all.csv")
        assert rc == 0 and [r["model"] for r in results] == ["gpunet-0"]
        # Without --checkpoint a single model uses the cached published file too (upstream's forced --pretrained).
        rc, single, _ = run_validate(capsys, digits_root, "--model", "0.65ms", *FAST)
        assert rc == 0 and single["top1"] == results[0]["top1"]
    finally:
        torch.hub.set_dir(before)


@pytest.mark.parametrize("flag, value, fragment", [
    ("--fuser", "te", "--fuser te is not supported"),
    ("--torchscript", None, "--torchscript is not supported"),
    ("--num-gpu", "2", "DataParallel"),
    ("--dataset", "tfds/imagenet2012", "only an image folder"),
    ("--split", "train", "--split train is not supported"),
    ("--real-labels", "real.json", "--real-labels real.json is not supported"),
    ("--apex-amp", None, "--amp"),
])
def test_refused_timm_flags_are_one_line(digits_root, flag, value, fragment):
    argv = [flag] if value is None else [flag, value]
    proc = run_script(VALIDATE, digits_root, "--model", "gpunet_0", *argv)
    assert_one_line_error(proc, fragment)


def test_accepted_compatibility_flags(digits_root, ckpts, capsys):
    rc, result, _ = run_validate(capsys, digits_root, "--model", "gpunet_0", "--checkpoint", ckpts["plain"], *FAST,
                                 "--no-prefetcher", "--pin-mem", "--dataset", "", "--split", "validation")
    assert rc == 0 and result["images"] == 359


def test_topk_above_the_class_count_is_warned_once_with_the_users_k(digits_root, ckpts, capsys):
    rc, result, err = run_validate(capsys, digits_root, "--model", "gpunet_0", "--checkpoint", ckpts["plain"], *FAST,
                                   "--topk", 20)
    assert rc == 0 and result["top20"] == 100.0
    assert err.count("warning: --topk 20 is more than the 10 classes in") == 1
    _, _, err = run_validate(capsys, digits_root, "--model", "gpunet_0", "--checkpoint", ckpts["plain"], *FAST)
    assert "--topk" not in err


def test_unknown_model_is_one_line(digits_root):
    proc = run_script(VALIDATE, digits_root, "--model", "gpunet_9", "--cpu")
    assert_one_line_error(proc, "unknown model 'gpunet_9'")


def test_missing_data_folder_is_one_line(tmp_path):
    proc = run_script(VALIDATE, tmp_path / "missing", "--model", "gpunet_0")
    assert_one_line_error(proc, "does not exist")


def test_class_count_mismatch_is_one_line(digits_root, ckpts):
    proc = run_script(VALIDATE, digits_root, "--model", "gpunet_0", "--checkpoint", ckpts["plain"], "--num-classes",
                      1000, *FAST)
    assert_one_line_error(proc, "has 10 classes but --num-classes is 1000")


def test_other_architecture_and_data_class_mismatch(digits_root, ckpts, tmp_path):
    from gpunet.validate import main

    with pytest.raises(UserError, match="does not fit gpunet-1"):
        main([str(digits_root), "--model", "gpunet_1", "--checkpoint", str(ckpts["plain"]), *FAST])
    with pytest.raises(UserError, match="holds gpunet-0 weights, not gpunet-1"):
        main([str(digits_root), "--model", "gpunet_1", "--checkpoint", str(ckpts["training"]), *FAST])
    five = tmp_path / "five"
    for cls in range(5):
        (five / str(cls)).mkdir(parents=True)
        for image in sorted((digits_root / "val" / str(cls)).iterdir())[:2]:
            (five / str(cls) / image.name).write_bytes(image.read_bytes())
    with pytest.raises(UserError, match=r"data folder has 5 classes but the model has 10 \(from "):
        main([str(five), "--model", "gpunet_0", "--checkpoint", str(ckpts["plain"]), *FAST])


def test_eval_lists_the_zoo(tmp_path):
    proc = run_script(EVAL, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    resolutions = {r["marketing_name"]: (r["latency"], r["resolution"], r["crop_pct"]) for r in rows}
    assert resolutions == {
        "GPUNet-0": ("0.65ms", 320, 1.0), "GPUNet-1": ("0.85ms", 288, 1.0), "GPUNet-2": ("1.75ms", 384, 1.0),
        "GPUNet-P0": ("0.5ms-D", 224, 0.875), "GPUNet-P1": ("0.8ms-D", 224, 0.875),
        "GPUNet-D1": ("1.25ms-D", 456, 1.0), "GPUNet-D2": ("2.25ms-D", 528, 1.0),
    }
    params = {r["name"]: r["params"] for r in rows}
    assert params["gpunet-0"] == 11_885_432 and params["gpunet-d2"] == 19_036_728
    for r in rows:
        assert r["ngc_url"].startswith("https://api.ngc.nvidia.com/") and isinstance(r["cached"], bool)
        assert Path(r["cache_path"]).name == f"{r['latency']}.pth.tar"


def test_eval_table(capsys):
    from gpunet.eval import main

    assert main([]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("gpunet-")]
    assert len(rows) == 7
    assert any(line.split()[:4] == ["gpunet-d2", "GPUNet-D2", "2.25ms-D", "528"] for line in rows)
    assert "nothing is downloaded" in out
