"""A run resumed at another batch size or on another number of processes continues the epoch where it stopped and
the learning rate where it was: at every sample count, the rate of the uninterrupted run."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from common.dllogger import read_report
from image_classification.data.samplers import ShardSampler
from image_classification.training.schedule import LRSchedule
from tests.conftest import REPO
from tests.image_classification.training.helpers import load, run, signal_at_step

N_TRAIN = 160  # small_digits
# Whole epochs (no --prof), warmup then cosine, so the rate moves at every step.
FLAGS = ["--epochs", 3, "--prof", -1, "-j", 0, "--warmup", 1, "--lr", 0.02, "--print-freq", 1]


def _record_rates(monkeypatch) -> list[tuple[int, int, float]]:
    """(epoch, samples into the epoch, rate) of every step the next run takes, as the schedule was asked."""
    seen = []
    original = LRSchedule.apply

    def recorded(self, optimizer, progress):
        lr = original(self, optimizer, progress)
        epoch = int(progress)
        seen.append((epoch, round((progress - epoch) * N_TRAIN), lr))
        return lr

    monkeypatch.setattr(LRSchedule, "apply", recorded)
    return seen


def _uninterrupted_rates(small_digits, tmp_path, monkeypatch) -> dict[tuple[int, int], float]:
    rates = _record_rates(monkeypatch)
    run(small_digits, tmp_path / "full", *FLAGS, "-b", 16)
    monkeypatch.undo()
    assert [(e, s) for e, s, _ in rates][:3] == [(0, 0), (0, 16), (0, 32)]
    return {(e, s): lr for e, s, lr in rates}


def _interrupt(small_digits, workspace, monkeypatch, step: int):
    signal_at_step(monkeypatch, signal.SIGTERM, step)
    summary = run(small_digits, workspace, *FLAGS, "-b", 16)
    monkeypatch.undo()
    ckpt = load(workspace / "checkpoint.pth.tar")
    assert summary["stopped"].startswith("SIGTERM at epoch")
    return ckpt


def test_resume_at_double_batch_size_continues_the_epoch_and_the_rate(small_digits, tmp_path, monkeypatch, capsys):
    reference = _uninterrupted_rates(small_digits, tmp_path, monkeypatch)
    ckpt = _interrupt(small_digits, tmp_path / "part", monkeypatch, step=12)  # epoch 1, after its third step
    assert (ckpt["epoch"], ckpt["samples"]) == (1, 3 * 16)

    capsys.readouterr()
    rates = _record_rates(monkeypatch)
    summary = run(small_digits, tmp_path / "part", *FLAGS, "-b", 32, "--resume",
                  tmp_path / "part" / "checkpoint.pth.tar")
    assert summary["epochs_done"] == 3
    assert "resuming with batch size 32 (was 16)" in capsys.readouterr().out
    # The rest of epoch 1 from sample 48 (112 images left: 3 full batches of 32), then whole epochs of 5 steps.
    assert [(e, s) for e, s, _ in rates] == [(1, 48), (1, 80), (1, 112), *((2, 32 * k) for k in range(5))]
    for epoch, samples, lr in rates:
        assert lr == pytest.approx(reference[(epoch, samples)], abs=1e-6), (epoch, samples)


def test_a_checkpoint_of_a_run_that_stopped_at_another_batch_resumes_in_the_right_place(small_digits, tmp_path,
                                                                                          monkeypatch):
    """Half the batch after the stop: the epoch's remaining 112 samples are 7 steps of 16 and none is skipped."""
    ckpt = _interrupt(small_digits, tmp_path / "part", monkeypatch, step=12)
    rates = _record_rates(monkeypatch)
    run(small_digits, tmp_path / "part", *FLAGS, "-b", 8, "--resume", tmp_path / "part" / "checkpoint.pth.tar",
        "--run-epochs", 1)
    assert [s for e, s, _ in rates] == list(range(ckpt["samples"], N_TRAIN, 8))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_resume_on_two_processes_continues_the_rate_of_the_one_process_run(small_digits, tmp_path, monkeypatch):
    reference = _uninterrupted_rates(small_digits, tmp_path, monkeypatch)
    ckpt = _interrupt(small_digits, tmp_path / "part", monkeypatch, step=12)
    workspace = tmp_path / "two"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master-addr", "127.0.0.1",
            "--master-port", str(_free_port()), "efficientnet/main.py", str(small_digits), "--workspace",
            str(workspace), "--resume", str(tmp_path / "part" / "checkpoint.pth.tar"), "--image-size", "32", "-b", "16",
            "--lr-schedule", "cosine", "--seed", "3", "--no-progress", "--bn_momentum", "0.1", "--cpu",
            *map(str, FLAGS)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "resuming with processes 2 (was 1)" in proc.stdout
    steps = [r for r in read_report(workspace / "experiment_raport.json")
             if r.get("type") == "LOG" and isinstance(r.get("step"), list) and len(r["step"]) == 2
             and "train.lr" in r["data"]]
    # Two processes of 16: 32 samples a step. The report numbers an epoch's steps from 1, from where it resumed.
    positions = [(1, ckpt["samples"] + 32 * k) for k in range(3)] + [(2, 32 * k) for k in range(5)]
    assert len(steps) == len(positions)
    for record, position in zip(steps, positions):
        assert record["data"]["train.lr"] == pytest.approx(reference[position], abs=1e-6), position


@pytest.mark.parametrize("world", [1, 2, 3])
def test_the_sampler_resumes_on_any_number_of_ranks_with_exactly_the_unread_images(world):
    """16 samples a step on one rank for 3 steps, then any number of ranks: together they read the rest of the
    epoch's order (the wrapped padding aside) and nothing else."""
    size, consumed = 100, 3 * 16
    one = ShardSampler(size, shuffle=True, seed=4)
    one.set_epoch(2)
    order = [i for _, i in one]
    shards = []
    for rank in range(world):
        sampler = ShardSampler(size, shuffle=True, seed=4, rank=rank, world_size=world)
        sampler.set_epoch(2, start=consumed)
        shards.append([i for _, i in sampler])
        assert len(sampler) == len(shards[-1])
    assert len({len(s) for s in shards}) == 1  # equal step counts on every rank
    read = [i for step in zip(*shards) for i in step]  # rank order within a step: the global order
    assert read[: size - consumed] == order[consumed:]
    assert set(read[size - consumed:]) <= set(order)  # only the padding that evens out the ranks
    assert len(read) - (size - consumed) < world


def test_the_timm_dialect_resumes_at_another_batch_size_too(small_digits, tmp_path, monkeypatch, capsys):
    from gpunet import train

    flags = [str(small_digits), "--model", "gpunet_0", "--img-size", "32", "--epochs", "3", "--cooldown-epochs", "0",
             "--sched", "cosine", "--warmup-epochs", "1", "--lr", "0.02", "--opt", "momentum", "--cpu", "-j", "0",
             "--no-progress", "--seed", "1", "--log-interval", "1", "--output", str(tmp_path)]
    rates = _record_rates(monkeypatch)
    assert train.main([*flags, "-b", "16", "--experiment", "full"]) == 0
    monkeypatch.undo()
    reference = {(e, s): lr for e, s, lr in rates}

    signal_at_step(monkeypatch, signal.SIGTERM, 12)
    assert train.main([*flags, "-b", "16", "--experiment", "part"]) == 75
    monkeypatch.undo()
    capsys.readouterr()
    rates = _record_rates(monkeypatch)
    assert train.main([*flags, "-b", "32", "--experiment", "part", "--resume",
                       str(tmp_path / "part" / "last.pth.tar")]) == 0
    assert "resuming with batch size 32 (was 16)" in capsys.readouterr().out
    assert [(e, s) for e, s, _ in rates] == [(1, 48), (1, 80), (1, 112), *((2, 32 * k) for k in range(5))]
    for epoch, samples, lr in rates:
        assert lr == pytest.approx(reference[(epoch, samples)], abs=1e-6), (epoch, samples)
