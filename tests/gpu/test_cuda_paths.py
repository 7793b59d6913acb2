"""GPU-only behaviour (run by `nox -s gpu`); every test skips with a reason where no CUDA device is present."""
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_amp_fp16_channels_last_training_on_synthetic_data(tmp_path):
    from tests.image_classification.training.helpers import run

    summary = run("unused", tmp_path, "--data-backend", "synthetic", "--amp", "--memory-format", "nhwc",
                  "--epochs", 2, "--num_classes", 10, "-b", 32, "--image-size", 64, "--use-ema", 0.9)
    assert summary["val"]["images"] == 4 * 32
    assert 0 < summary["peak_gpu_memory_gib"] < torch.cuda.get_device_properties(0).total_memory / 2**30
    ckpt = torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["scaler"] is not None and ckpt["scaler"]["scale"] > 0  # GradScaler really ran
    assert all(torch.isfinite(v.float()).all() for v in ckpt["state_dict"].values())


def test_bf16_training_needs_no_scaler(tmp_path):
    from tests.image_classification.training.helpers import run

    run("unused", tmp_path, "--data-backend", "synthetic", "--amp", "--amp-dtype", "bf16", "--epochs", 1,
        "--num_classes", 10, "-b", 16, "--image-size", 32)
    assert torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)["scaler"] is None


def test_cuda_prefetch_matches_cpu_batches(digits_root):
    from image_classification.models.registry import IMAGENET_MEAN, IMAGENET_STD
    from image_classification.training.config import TrainingConfig
    from image_classification.training.run_data import build_run_data

    cfg = TrainingConfig(data=str(digits_root), batch_size=16, workers=0, seed=0)
    common = dict(image_size=32, val_image_size=32, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  need_train=False)
    cpu = list(build_run_data(cfg, device=torch.device("cpu"), **common).val)
    gpu = list(build_run_data(cfg, device=torch.device("cuda"), **common).val)
    assert len(cpu) == len(gpu)
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and torch.allclose(xc, xg.cpu(), atol=1e-5) and torch.equal(yc, yg.cpu())


def test_evaluate_runs_the_fast_path_and_agrees_with_the_plain_model(digits_root, tmp_path, capsys):
    """--evaluate on a GPU: the fast path (compiled, one CUDA graph, the short last batch padded into it) scores
    what the plain autocast model scores, and reports the upstream latency fields."""
    import json

    from tests.image_classification.training.helpers import run

    train_dir = tmp_path / "train"
    run(digits_root, train_dir, "--epochs", 2, "--amp", "--prof", -1, "--arch", "efficientnet-b0")
    checkpoint = train_dir / "model_best.pth.tar"
    results = {}
    for name, extra in (("fast", ()), ("plain", ("--no-fast",))):
        workspace = tmp_path / name
        summary = run(digits_root, workspace, "--evaluate", "--amp", "--prof", -1, "--pretrained-from-file",
                      checkpoint, "-b", 64, *extra)
        results[name] = summary
        records = [json.loads(line[5:]) for line in (workspace / "experiment_raport.json").read_text().splitlines()
                   if line.startswith("DLLL ")]
        summary_fields = {k: v for r in records if r.get("step") == [] for k, v in r["data"].items()}
        for field in ("val.compute_latency", "val.compute_latency_at50", "val.compute_latency_at90",
                      "val.compute_latency_at95", "val.compute_latency_at99", "val.total_ips", "val.compute_ips"):
            assert field in summary_fields, field
    out = capsys.readouterr().out
    assert "fast inference path" in out and "CUDA graph for batch 64" in out
    assert results["fast"]["inference"]["fast_path"] and results["fast"]["inference"]["compile_s"] > 0
    assert "inference" not in results["plain"]
    assert results["fast"]["val"]["images"] == results["plain"]["val"]["images"] == 359
    assert abs(results["fast"]["val"]["top1"] - results["plain"]["val"]["top1"]) <= 1.0


@pytest.mark.parametrize("backend", ["dali-gpu", "dali-cpu", "pytorch-gpu"])
def test_gpu_data_backends_match_the_pytorch_backend_on_cuda(digits_root, backend):
    """Every CUDA data path hands the trainer what the pytorch backend does: same images (within resize
    differences), same targets, every validation image once, batches on the GPU."""
    if backend.startswith("dali"):
        pytest.importorskip("nvidia.dali")
    from image_classification.models.registry import IMAGENET_MEAN, IMAGENET_STD
    from image_classification.training.config import TrainingConfig
    from image_classification.training.run_data import build_run_data

    common = dict(image_size=32, val_image_size=32, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  need_train=False, device=torch.device("cuda"))
    reference = list(build_run_data(TrainingConfig(data=str(digits_root), batch_size=32, workers=2, seed=0),
                                    **common).val)
    other = list(build_run_data(TrainingConfig(data=str(digits_root), batch_size=32, workers=2, seed=0,
                                               data_backend=backend), **common).val)
    assert sum(len(y) for _, y in other) == 359 and len(other) == len(reference)
    for (xr, yr), (xo, yo) in zip(reference, other):
        assert xo.is_cuda and yo.is_cuda and xo.dtype == torch.float32 and xo.shape == xr.shape
        assert torch.equal(yr, yo)
        assert (xr - xo).abs().mean().item() < 0.05


@pytest.mark.parametrize("priority", ["high", "normal"])
def test_training_and_validation_run_on_the_chosen_stream_priority(tmp_path, monkeypatch, priority):
    from image_classification.training import trainer as T
    from tests.image_classification.training.helpers import run

    seen = []
    build = T.build_train_loss

    def spy_build(*args, **kwargs):
        loss = build(*args, **kwargs)

        def recorded(logits, targets):
            seen.append(("train", torch.cuda.current_stream().priority))
            return loss(logits, targets)

        return recorded

    validate = T.Trainer.validate

    def spy_validate(self, model, prefix):
        seen.append(("val", torch.cuda.current_stream().priority))
        return validate(self, model, prefix)

    monkeypatch.setattr(T, "build_train_loss", spy_build)
    monkeypatch.setattr(T.Trainer, "validate", spy_validate)
    summary = run("unused", tmp_path, "--data-backend", "synthetic", "--amp", "--epochs", 1, "--num_classes", 10,
                  "--stream-priority", priority)
    assert {kind for kind, _ in seen} == {"train", "val"}
    priorities = {p for _, p in seen}
    assert len(priorities) == 1
    if priority == "high":
        assert priorities.pop() < 0  # CUDA: lower numbers run first; 0 is the default streams' priority
    else:
        assert priorities == {0}
    assert torch.isfinite(torch.tensor(summary["metrics"]["train.loss"]))
    assert torch.cuda.current_stream().priority == 0  # the caller's stream is current again afterwards
