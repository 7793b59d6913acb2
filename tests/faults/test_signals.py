"""Signals as schedulers send them: the run finishes its step, saves, and exits with status 75 (resumable).

SLURM, Kubernetes and `timeout` signal the whole process group, DataLoader workers included; SLURM warns with
SIGUSR1 ahead of the end; a terminal sends SIGINT."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from common.cli_errors import EXIT_RESUMABLE
from common.dllogger import read_report
from image_classification.training import trainer as T
from image_classification.training.checkpointing import ConvNetsLayout
from tests.conftest import REPO
from tests.image_classification.training.helpers import load, max_weight_diff, run, signal_at_step

# Short epochs (--prof 12) of real data with two loader workers, every source of randomness on.
FLAGS = ["--image-size", "32", "-b", "16", "--prof", "12", "--epochs", "20", "--lr", "0.02", "--lr-schedule",
         "cosine", "--warmup", "1", "--seed", "5", "--bn_momentum", "0.1", "--mixup", "0.2", "--dropout", "0.3",
         "--use-ema", "0.9", "--print-freq", "2", "--no-progress", "--cpu", "-j", "2"]


def _main(data, workspace, *extra) -> list[str]:
    return [sys.executable, "efficientnet/main.py", str(data), "--workspace", str(workspace), *FLAGS, *map(str, extra)]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}


def _signal_group_once_training(argv: list[str], report, signum: int) -> subprocess.CompletedProcess:
    """Starts the run in a process group of its own, waits for its first training record, signals the group."""
    proc = subprocess.Popen(argv, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if report.is_file() and any(r.get("type") == "LOG" and isinstance(r.get("step"), list) and len(r["step"]) == 2
                                    for r in read_report(report)):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_group_sigterm_with_workers_saves_and_the_resumed_run_matches(digits_root, tmp_path):
    part = tmp_path / "part"
    stopped = _signal_group_once_training(_main(digits_root, part), part / "experiment_raport.json", signal.SIGTERM)
    assert stopped.returncode == EXIT_RESUMABLE, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "killed by signal" not in stopped.stderr, stopped.stderr[-3000:]
    assert "stopped by SIGTERM" in stopped.stdout and f"exit status {EXIT_RESUMABLE}" in stopped.stdout
    saved = load(part / "checkpoint.pth.tar")
    assert saved["epoch"] < 2  # the signal came in the first epoch (or its validation)

    # The resumed run and an uninterrupted one end epoch 2 of the same 20-epoch schedule with the same weights.
    resumed = subprocess.run(_main(digits_root, part, "--resume", part / "checkpoint.pth.tar", "--run-epochs",
                                   2 - saved["epoch"]), cwd=REPO, env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full = subprocess.run(_main(digits_root, tmp_path / "full", "--run-epochs", 2), cwd=REPO, env=_env(),
                          capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-3000:]
    a, b = load(tmp_path / "full" / "checkpoint.pth.tar"), load(part / "checkpoint.pth.tar")
    assert a["epoch"] == b["epoch"] == 2
    assert max_weight_diff(a["state_dict"], b["state_dict"]) == 0.0
    assert max_weight_diff(a["state_dict_ema"], b["state_dict_ema"]) == 0.0


def test_sigusr1_stops_like_sigterm_by_default(digits_root, tmp_path, monkeypatch, capsys):
    signal_at_step(monkeypatch, signal.SIGUSR1, 2)
    summary = run(digits_root, tmp_path, "--epochs", 2, "-j", 0)
    assert summary["stopped"] == "SIGUSR1 at epoch 0, iteration 3"
    assert T.exit_status(summary) == EXIT_RESUMABLE
    ckpt = load(tmp_path / "checkpoint.pth.tar")
    assert (ckpt["epoch"], ckpt["iteration"]) == (0, 3)
    assert "stopped by SIGUSR1 at epoch 0, iteration 3; resume with --resume" in capsys.readouterr().out


def test_sigusr1_checkpoint_saves_mid_epoch_and_goes_on(digits_root, tmp_path, monkeypatch, capsys):
    writes = []
    original_write = ConvNetsLayout.write

    def recorded(self, state, workspace, **where):
        writes.append((where["epoch"], where["iteration"]))
        return original_write(self, state, workspace, **where)

    monkeypatch.setattr(ConvNetsLayout, "write", recorded)
    signal_at_step(monkeypatch, signal.SIGUSR1, 5)
    summary = run(digits_root, tmp_path, "--epochs", 2, "-j", 0, "--sigusr1", "checkpoint")
    assert "stopped" not in summary and summary["epochs_done"] == 2
    assert T.exit_status(summary) == 0
    # Epoch 1 (second), iteration 2: global step 5 is the second epoch's second step (4 steps an epoch).
    assert writes == [(1, 0), (1, 2), (2, 0)]
    assert "SIGUSR1: saved" in capsys.readouterr().out


def test_sigterm_during_validation_finishes_it_saves_and_stops(digits_root, tmp_path, monkeypatch):
    validate = T.Trainer.validate

    def signal_then_validate(self, model, prefix):
        os.kill(os.getpid(), signal.SIGTERM)
        return validate(self, model, prefix)

    monkeypatch.setattr(T.Trainer, "validate", signal_then_validate)
    summary = run(digits_root, tmp_path, "--epochs", 3, "-j", 0)
    assert summary["stopped"] == "SIGTERM after epoch 0"
    assert summary["epochs_done"] == 1
    ckpt = load(tmp_path / "checkpoint.pth.tar")
    assert (ckpt["epoch"], ckpt["iteration"]) == (1, 0)  # the whole epoch, validated, is saved
    val = [r for r in read_report(tmp_path / "experiment_raport.json")
           if r.get("type") == "LOG" and r.get("step") == [0] and "val.top1" in r["data"]]
    assert val, "the validation that was running when the signal came must be finished and reported"


def test_a_second_sigint_interrupts_at_once(digits_root, tmp_path, monkeypatch):
    # The handler the run must restore is set here: what the process started with depends on how it was started (a
    # shell's background job begins with SIGINT ignored).
    def callers_handler(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGINT, callers_handler)
    try:
        signal_at_step(monkeypatch, signal.SIGINT, 2, times=2)
        with pytest.raises(KeyboardInterrupt):
            run(digits_root, tmp_path, "--epochs", 2, "-j", 0)
        assert signal.getsignal(signal.SIGINT) is callers_handler  # handlers restored
    finally:
        signal.signal(signal.SIGINT, before)


def test_exit_status_tells_resumable_stops_from_the_rest():
    assert T.exit_status(None) == 0
    assert T.exit_status({"epochs_done": 3}) == 0
    assert T.exit_status({"stopped": "SIGTERM at epoch 1, iteration 3", "resume_from": "ws/checkpoint.pth.tar"}) == 75
    # Nothing saved (benchmark modes, --no-checkpoints): nothing to resume, the shell's convention for the signal.
    assert T.exit_status({"stopped": "SIGTERM at epoch 1, iteration 3"}) == 128 + signal.SIGTERM
