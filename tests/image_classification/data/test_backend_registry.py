"""A data backend is one entry in BACKENDS (image_classification/data/choices.py): build_data, --data-backend's
choices and the unknown-backend message all read that registry, and each builder is imported only when chosen."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch

from common.cli_errors import UserError
from efficientnet.main import build_parser
from image_classification.data.bundle import DataBundle
from image_classification.data.choices import BACKENDS, Builder
from image_classification.data.config import DataConfig
from image_classification.data.loader import build_data
from tests.conftest import REPO

SIZES = dict(image_size=32, val_image_size=40, crop_pct=0.875, mean=(0.5,) * 3, std=(0.25,) * 3,
             device=torch.device("cpu"))


def build_listed(cfg, *, tag, image_size, val_image_size, num_classes, need_train, need_val, **rest) -> DataBundle:
    """A backend that hands back what build_data passed it, so the test sees the whole call."""
    return DataBundle(("train", tag, image_size, rest) if need_train else None, ("val", val_image_size), num_classes,
                      [cfg.data_backend])


def test_one_registry_entry_adds_a_backend(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="choose from pytorch, synthetic, dali-cpu, dali-gpu, pytorch-gpu$"):
        build_data(DataConfig(data_backend="listed"), **SIZES)

    monkeypatch.setitem(BACKENDS, "listed", Builder(__name__, "build_listed", {"tag": "fixed"}))
    bundle = build_data(DataConfig(data_backend="listed"), **SIZES, num_classes=7, seed=3, rank=1, world_size=2)
    (split, tag, size, rest), val = bundle.train, bundle.val
    assert (split, tag, size, val, bundle.num_classes, bundle.class_names) == (
        "train", "fixed", 32, ("val", 40), 7, ["listed"])
    assert (rest["seed"], rest["rank"], rest["world_size"], rest["memory_format"]) == (3, 1, 2, "nchw")
    assert set(rest) == {"crop_pct", "mean", "std", "device", "memory_format", "seed", "flag", "rank", "world_size"}
    assert build_parser().parse_args([str(tmp_path), "--data-backend", "listed"]).data_backend == "listed"
    with pytest.raises(UserError, match="choose from pytorch, synthetic, dali-cpu, dali-gpu, pytorch-gpu, listed$"):
        build_data(DataConfig(data_backend="other"), **SIZES)


def test_the_synthetic_backend_imports_no_other_builder():
    """The registry names modules so that only the chosen backend's is imported: DALI's above all."""
    code = ("import sys, torch\n"
            "from image_classification.data.config import DataConfig\n"
            "from image_classification.data.loader import build_data\n"
            "b = build_data(DataConfig(data_backend='synthetic', batch_size=2, synthetic_steps=1), image_size=8,\n"
            "               val_image_size=8, crop_pct=1.0, mean=None, std=None, device=torch.device('cpu'))\n"
            "assert b.num_classes == 1000 and len(b.train) == 1\n"
            "print(sorted(m for m in sys.modules if m.endswith(('.data.dali', '.data.gpu_decode'))\n"
            "             or m.startswith('nvidia')))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stdout.strip()) == (0, "[]"), proc.stderr[-2000:]


def test_a_backend_is_told_apart_by_its_declared_properties_not_its_name(monkeypatch, tmp_path):
    """What the code around a builder asks of a backend (does it read a data folder, does it need CUDA) comes from
    the entry's declared properties: a new backend declared like synthetic (no folder) or like dali-gpu (CUDA only)
    is treated as they are, under a name no caller knows."""
    from image_classification.cli.convnets import require_weights_to_evaluate
    from image_classification.data import bench
    from image_classification.data.choices import folder_backends, needs_cuda, reads_folder
    from image_classification.data.synthetic import SyntheticLoader
    from image_classification.quantization.calibrate import calibration_loader
    from image_classification.training.config import TrainingConfig

    assert [(n, reads_folder(n), needs_cuda(n)) for n in BACKENDS] == [
        ("pytorch", True, False), ("synthetic", False, False), ("dali-cpu", True, False), ("dali-gpu", True, True),
        ("pytorch-gpu", True, False)]  # pytorch-gpu runs on the CPU too (decode_jpeg there); dali-gpu cannot
    assert (reads_folder("unknown"), needs_cuda("unknown")) == (True, False)  # refused later, by name, as before

    made_up = Builder(".synthetic", "build_synthetic_data")  # batches made up, whatever the entry declares
    monkeypatch.setitem(BACKENDS, "with-folder", made_up)
    monkeypatch.setitem(BACKENDS, "no-folder", Builder(made_up.module, made_up.function, reads_folder=False))
    monkeypatch.setitem(BACKENDS, "cuda-only", Builder(made_up.module, made_up.function, reads_folder=False,
                                                       needs_cuda=True))
    assert folder_backends() == ["pytorch", "dali-cpu", "dali-gpu", "pytorch-gpu", "with-folder"]

    # The training configuration asks for a data folder only of a backend that reads one.
    TrainingConfig(data_backend="no-folder").validate()
    with pytest.raises(UserError, match="^no data path given: pass the data folder"):
        TrainingConfig(data_backend="with-folder").validate()

    # --evaluate without weights is allowed on made-up batches (their labels mean nothing), refused on a folder.
    args = argparse.Namespace()
    require_weights_to_evaluate(TrainingConfig(data_backend="no-folder", evaluate=True), args)
    with pytest.raises(UserError, match="^--evaluate needs the weights to score"):
        require_weights_to_evaluate(TrainingConfig(data_backend="with-folder", evaluate=True), args)

    # Calibration draws the synthetic batches for a backend without a folder; one with a folder needs its train/.
    cfg = TrainingConfig(data_backend="no-folder", batch_size=2, synthetic_steps=1, seed=1)
    loader, classes = calibration_loader(cfg, image_size=8, crop_pct=1.0, mean=None, std=None,
                                         device=torch.device("cpu"), num_classes=3)
    assert isinstance(loader, SyntheticLoader) and classes is None
    with pytest.raises(UserError, match="calibration reads the training images"):
        calibration_loader(TrainingConfig(data_backend="with-folder", data=str(tmp_path)), image_size=8,
                           crop_pct=1.0, mean=None, std=None, device=torch.device("cpu"))

    # The data bench skips a CUDA-only backend on the CPU as it skips dali-gpu, and gives no workers to a backend
    # without a folder (nor asks for the folder when only such backends are timed).
    sizes = dict(split="train", batch_size=2, image_size=8, workers=3, batches=1, warmup=0,
                 device=torch.device("cpu"))
    skipped = bench.measure("cuda-only", None, **sizes)
    assert (skipped.status, skipped.workers) == ("skipped", None)
    assert skipped.reason.startswith("cuda-only needs a CUDA device")
    ran, folder = bench.measure("no-folder", None, **sizes), bench.measure("with-folder", None, **sizes)
    assert (ran.status, ran.workers, folder.status, folder.workers) == ("ok", None, "ok", 3)
    missing = str(tmp_path / "missing")
    assert bench.main([missing, "--backends", "no-folder", "cuda-only", "--cpu", "-b", "2", "--image-size", "8",
                       "--batches", "1", "--warmup", "0", "-j", "0"]) == 0
    with pytest.raises(UserError, match="does not exist"):
        bench.main([missing, "--backends", "no-folder", "with-folder", "--cpu"])
