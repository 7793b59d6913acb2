"""Upstream's Python API: configs.model_hub and models.gpunet_builder.GPUNet_Builder, over the shared core."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.cli_errors import UserError
from gpunet.configs.model_hub import (
    MODEL_ZOO_KEYS_B1_NGC,
    MODEL_ZOO_NAME2TYPE_B1,
    get_configs,
    get_model_list,
)
from gpunet.models.gpunet_builder import GPUNet_Builder
from image_classification.models import create_model, get_model_info
from image_classification.models.gpunet import to_upstream_state_dict
from tests.conftest import REPO, SHARED

LATENCIES = ["0.65ms", "0.85ms", "1.75ms", "1.25ms-D", "2.25ms-D", "0.5ms-D", "0.8ms-D"]
NAMES = {"0.65ms": "gpunet-0", "0.85ms": "gpunet-1", "1.75ms": "gpunet-2", "1.25ms-D": "gpunet-d1",
         "2.25ms-D": "gpunet-d2", "0.5ms-D": "gpunet-p0", "0.8ms-D": "gpunet-p1"}
UPSTREAM_CONFIGS = SHARED / "reference" / "gpunet-configs"


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_model_list_and_constants():
    assert get_model_list() == LATENCIES
    assert get_model_list(batch="1") == LATENCIES
    assert MODEL_ZOO_NAME2TYPE_B1 == {"GPUNet-0": "0.65ms", "GPUNet-1": "0.85ms", "GPUNet-2": "1.75ms",
                                      "GPUNet-P0": "0.5ms-D", "GPUNet-P1": "0.8ms-D", "GPUNet-D1": "1.25ms-D",
                                      "GPUNet-D2": "2.25ms-D"}
    urls = MODEL_ZOO_KEYS_B1_NGC["GV100"]
    assert list(urls) == LATENCIES
    assert urls["1.25ms-D"] == ("https://api.ngc.nvidia.com/v2/models/nvidia/dle/gpunet_d1_pyt_ckpt/versions/"
                                "21.12.0_amp/zip")


@pytest.mark.parametrize("latency", LATENCIES)
def test_configs_build_the_registered_network(latency, tmp_path):
    config, checkpoint = get_configs(batch=1, latency=latency, gpuType="GV100", config_root_dir=tmp_path)
    assert checkpoint == str(tmp_path / "batch1" / "GV100" / f"{latency}.pth.tar")
    assert config[0]["layer_type"] == "data" and config[-1]["num_classes"] == 1000
    json.dumps(config)  # plain JSON, as upstream's files
    with torch.device("meta"):  # shapes only
        model = GPUNet_Builder().get_model(config)
        registered = create_model(NAMES[latency])
    assert not model.training  # upstream returned the network in eval mode
    assert model.imgRes == get_model_info(NAMES[latency]).input_size
    assert n_params(model) == n_params(registered)
    assert [k for k, _ in model.state_dict().items()] == list(registered.state_dict())
    upstream_file = UPSTREAM_CONFIGS / f"{latency}.json"
    if UPSTREAM_CONFIGS.is_dir():
        upstream = json.loads(upstream_file.read_text())
        upstream = [{k: v for k, v in entry.items() if k != "stage:"} for entry in upstream]  # upstream's typo key
        assert config == upstream


def test_configs_accept_names_and_refuse_what_upstream_asserted(tmp_path):
    assert get_configs(latency="GPUNet-D2")[0] == get_configs(latency="2.25ms-D")[0]
    assert get_configs(latency="gpunet_p1")[1].endswith("0.8ms-D.pth.tar")
    for kwargs, fragment in [({"batch": 8}, "batch 8"), ({"gpuType": "A100"}, "GPU type 'A100'"),
                             ({"latency": "1ms"}, "unknown GPUNet latency '1ms'")]:
        with pytest.raises(UserError, match=fragment):
            get_configs(**kwargs)
    with pytest.raises(UserError, match="nothing is downloaded") as err:
        get_configs(latency="0.65ms", config_root_dir=tmp_path, download=True)
    message = str(err.value)
    assert MODEL_ZOO_KEYS_B1_NGC["GV100"]["0.65ms"] in message
    assert str(tmp_path / "batch1" / "GV100" / "0.65ms.pth.tar") in message
    assert not any(tmp_path.iterdir())  # nothing fetched, nothing written


def test_get_model_validates_the_json():
    config, _ = get_configs(latency="0.65ms")
    broken = copy.deepcopy(config)
    del broken[0]["distill"]
    with pytest.raises(UserError, match="missing key 'distill'"):
        GPUNet_Builder().get_model(broken)


def small_config(num_classes: int, resolution: int):
    config, _ = get_configs(latency="0.65ms")
    config[0]["img_resolution"] = resolution
    config[-1]["num_classes"] = num_classes
    return config


def test_export_onnx_has_a_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    builder = GPUNet_Builder()
    model = builder.get_model(small_config(10, 64))
    path = builder.export_onnx(model, tmp_path / "gpunet.onnx")
    assert not model.training
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_test_model_matches_evaluate(digits_root, tmp_path):
    from image_classification.data.config import DataConfig
    from image_classification.data.loader import build_data
    from image_classification.inference.evaluate import evaluate

    torch.manual_seed(0)
    source = create_model("gpunet-0", num_classes=10).eval()
    with torch.no_grad():
        source.head.fc.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(3))
    checkpoint = tmp_path / "upstream_keys.pth"
    torch.save({"state_dict": to_upstream_state_dict(source)}, checkpoint)  # upstream's names, timm layout

    builder = GPUNet_Builder()
    model = builder.get_model(small_config(10, 32))
    result = builder.test_model(model, testBatch=50, checkpoint=checkpoint, imgRes=(3, 32, 32), dtype="fp16",
                                val_path=digits_root / "val", crop_pct=1.0, workers=0, device="cpu")
    assert set(result) == {"top1", "top5", "top1_err", "top5_err", "img_size", "interpolation"}
    assert result["img_size"] == 32 and result["interpolation"] == "bicubic"

    cfg = DataConfig(data=str(digits_root), batch_size=64, workers=0, interpolation="bicubic")
    info = get_model_info("gpunet-0")
    val = build_data(cfg, image_size=32, val_image_size=32, crop_pct=1.0, mean=info.mean, std=info.std,
                     device=torch.device("cpu"), need_train=False).val
    want = evaluate(source, val, device=torch.device("cpu"))
    assert result["top1"] == pytest.approx(want["top1"], abs=1e-4)
    assert result["top5"] == pytest.approx(want["top5"], abs=1e-4)
    assert result["top1_err"] == pytest.approx(100 - want["top1"], abs=1e-4)

    with pytest.raises(UserError, match="has 10 classes but the model has 1000"):
        builder.test_model(builder.get_model(small_config(1000, 32)), imgRes=(3, 32, 32), val_path=digits_root,
                           workers=0, device="cpu")
    with pytest.raises(UserError, match="val_path"):
        builder.test_model(model)


def test_upstream_import_style_from_the_gpunet_folder():
    """Upstream's scripts run inside the GPUNet folder: `from configs.model_hub import ...`."""
    code = ("from configs.model_hub import get_configs, get_model_list\n"
            "from models.gpunet_builder import GPUNet_Builder\n"
            "config, path = get_configs(batch=1, latency=get_model_list(1)[0], gpuType='GV100')\n"
            "model = GPUNet_Builder().get_model(config)\n"
            "print(model.imgRes, path)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO / "gpunet", capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["320", "./configs/batch1/GV100/0.65ms.pth.tar"]
