"""--resume continues exactly: a run stopped and resumed ends with the weights of an uninterrupted run."""
import signal

import pytest
import torch

from common.cli_errors import UserError

from .helpers import load, max_weight_diff, run, signal_at_step

# Every source of randomness on: augmentation, mixup, dropout, stochastic depth, EMA.
RANDOM = ["--epochs", 2, "--use-ema", 0.9, "--mixup", 0.2, "--dropout", 0.3, "--survival_prob", 0.8,
          "--label-smoothing", 0.1]
# On a GPU exactness also needs deterministic kernels (atomics in cuDNN backward reorder float sums).
DEVICES = [
    pytest.param(["--cpu"], id="cpu"),
    pytest.param(["--deterministic"], id="cuda", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_an_epoch_matches_uninterrupted_run(digits_root, tmp_path, workers, device):
    run(digits_root, tmp_path / "full", *RANDOM, *device, "-j", workers)
    run(digits_root, tmp_path / "part", *RANDOM, *device, "-j", workers, "--run-epochs", 1)
    assert load(tmp_path / "part" / "checkpoint.pth.tar")["epoch"] == 1
    run(digits_root, tmp_path / "part", *RANDOM, *device, "-j", workers, "--resume",
        tmp_path / "part" / "checkpoint.pth.tar")
    a, b = load(tmp_path / "full" / "checkpoint.pth.tar"), load(tmp_path / "part" / "checkpoint.pth.tar")
    assert a["epoch"] == b["epoch"] == 2
    assert max_weight_diff(a["state_dict"], b["state_dict"]) == 0.0
    assert max_weight_diff(a["state_dict_ema"], b["state_dict_ema"]) == 0.0


@pytest.mark.parametrize("device", DEVICES)
def test_sigterm_saves_mid_epoch_and_resume_is_exact(digits_root, tmp_path, monkeypatch, device):
    run(digits_root, tmp_path / "full", *RANDOM, *device, "-j", 2)

    signal_at_step(monkeypatch, signal.SIGTERM, 6)  # second epoch, third step: a mid-epoch stop
    summary = run(digits_root, tmp_path / "part", *RANDOM, *device, "-j", 2)
    assert "SIGTERM" in summary["stopped"]
    ckpt = load(tmp_path / "part" / "checkpoint.pth.tar")
    assert (ckpt["epoch"], ckpt["iteration"]) == (1, 3)  # the step in flight was finished, then saved
    assert signal.getsignal(signal.SIGTERM) is not None  # handler restored after the run
    monkeypatch.undo()

    run(digits_root, tmp_path / "part", *RANDOM, *device, "-j", 2, "--resume", tmp_path / "part" / "checkpoint.pth.tar")
    a, b = load(tmp_path / "full" / "checkpoint.pth.tar"), load(tmp_path / "part" / "checkpoint.pth.tar")
    assert max_weight_diff(a["state_dict"], b["state_dict"]) == 0.0
    assert max_weight_diff(a["state_dict_ema"], b["state_dict_ema"]) == 0.0


def test_sigterm_without_checkpoints_says_nothing_was_saved(digits_root, tmp_path, monkeypatch, capsys):
    signal_at_step(monkeypatch, signal.SIGTERM, 1)
    summary = run(digits_root, tmp_path, "--epochs", 1, "-j", 0, "--no-checkpoints")
    assert summary["stopped"] == "SIGTERM at epoch 0, iteration 2"
    assert "stopped by SIGTERM at epoch 0, iteration 2; no checkpoint written" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.pth.tar"))


def test_resume_refuses_finished_run_and_other_arch(digits_root, tmp_path):
    run(digits_root, tmp_path, "--epochs", 1, "-j", 0)
    ckpt = tmp_path / "checkpoint.pth.tar"
    with pytest.raises(UserError, match="already finished 1 of 1 epochs"):
        run(digits_root, tmp_path / "again", "--epochs", 1, "-j", 0, "--resume", ckpt)
    with pytest.raises(UserError, match="trained as efficientnet-b0, not efficientnet-b1"):
        run(digits_root, tmp_path / "other", "--epochs", 2, "-j", 0, "--resume", ckpt, "--arch", "efficientnet-b1")


def test_resume_rejects_plain_weights(digits_root, tmp_path):
    import torch

    from image_classification.models import create_model

    weights = tmp_path / "weights.pth"
    torch.save(create_model("efficientnet-b0", num_classes=10).state_dict(), weights)
    with pytest.raises(UserError, match="not a training checkpoint"):
        run(digits_root, tmp_path, "--epochs", 1, "-j", 0, "--resume", weights)


def test_ema_resume_from_checkpoint_without_ema(digits_root, tmp_path):
    """Upstream raised NameError here; the EMA starts from the checkpoint's weights instead."""
    run(digits_root, tmp_path, "--epochs", 2, "--run-epochs", 1, "-j", 0)
    run(digits_root, tmp_path, "--epochs", 2, "-j", 0, "--use-ema", 0.9, "--resume", tmp_path / "checkpoint.pth.tar")
    assert "state_dict_ema" in load(tmp_path / "checkpoint.pth.tar")
