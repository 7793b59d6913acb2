"""A data backend is one entry in BACKENDS (image_classification/data/choices.py): build_data, --data-backend's
choices and the unknown-backend message all read that registry, and each builder is imported only when chosen."""
from __future__ import annotations

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
