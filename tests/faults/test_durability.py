"""What is on disk survives: SIGKILL between any two writes never leaves a torn file or a best without its file,
the report and summary.csv keep their history across resumes, and a full disk stops the run with one line and the
previous checkpoint intact."""
from __future__ import annotations

import csv
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.dllogger import read_report
from image_classification.training.checkpointing import CheckpointWriteError
from tests.conftest import REPO, assert_one_line_error, run_script
from tests.image_classification.training.helpers import load, run, signal_at_step

# A driver that SIGKILLs itself just before the workspace's Nth file rename: the instant between two atomic writes
# (the first of them finished, the next one's temporary written but not in place).
KILL_AT_RENAME = """
import os, signal, sys
workspace, kill_at = sys.argv[1], int(sys.argv[2])
real_replace, renames = os.replace, [0]
def replace(src, dst):
    if str(dst).startswith(workspace):
        renames[0] += 1
        if renames[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)
os.replace = replace
sys.argv = sys.argv[3:]  # efficientnet/main.py and its arguments
from common.cli_errors import run_cli
from efficientnet.main import main
run_cli(main)
"""


def _train_argv(data, workspace, *extra) -> list[str]:
    return [str(data), "--workspace", str(workspace), "--image-size", "32", "-b", "16", "--epochs", "3", "--prof",
            "3", "-j", "0", "--lr", "0.02", "--seed", "1", "--bn_momentum", "0.1", "--cpu", "--no-progress",
            *map(str, extra)]


def _assert_consistent(workspace: Path) -> None:
    """Every checkpoint loads, and the best the latest one records has its file, holding that epoch."""
    for path in workspace.glob("*.pth.tar"):
        load(path)  # a torn file fails here
    latest = load(workspace / "checkpoint.pth.tar")
    if latest["best_epoch"] >= 0:
        best = load(workspace / "model_best.pth.tar")
        assert best["epoch"] >= latest["best_epoch"] + 1


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4])
def test_sigkill_between_any_two_writes_leaves_consistent_files_and_the_run_resumes(small_digits, tmp_path, kill_at):
    workspace = tmp_path / "ws"
    script = tmp_path / "kill_at_rename.py"
    script.write_text(KILL_AT_RENAME)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, script, str(workspace), str(kill_at), "efficientnet/main.py",
                             *_train_argv(small_digits, workspace)], cwd=REPO, env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    if (workspace / "checkpoint.pth.tar").exists():
        _assert_consistent(workspace)
    resumed = subprocess.run([sys.executable, "efficientnet/main.py", *_train_argv(small_digits, workspace,
                                                                                     "--resume", "auto")],
                             cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_consistent(workspace)
    assert load(workspace / "checkpoint.pth.tar")["epoch"] == 3
    assert not list(workspace.glob(".*.tmp"))  # the killed write's temporary was cleaned up
    assert all(isinstance(r, dict) for r in read_report(workspace / "experiment_raport.json"))


def test_a_best_recorded_without_its_file_is_re_created_on_resume(small_digits, tmp_path, capsys):
    workspace = tmp_path / "ws"
    run(small_digits, workspace, "--epochs", 3, "--run-epochs", 2, "-j", 0, "--gather-checkpoints", -1)
    best_epoch = load(workspace / "checkpoint.pth.tar")["best_epoch"]
    (workspace / "model_best.pth.tar").unlink()  # what a kill between the two writes did before best-first
    capsys.readouterr()
    run(small_digits, workspace, "--epochs", 3, "-j", 0, "--resume", "auto")
    assert f"re-created {workspace / 'model_best.pth.tar'} from" in capsys.readouterr().out
    assert load(workspace / "model_best.pth.tar")["epoch"] >= best_epoch + 1


def test_a_best_that_cannot_be_re_created_is_reported_in_one_line(small_digits, tmp_path, capsys, monkeypatch):
    workspace = tmp_path / "ws"
    signal_at_step(monkeypatch, 15, 6)  # SIGTERM mid-epoch 1: the checkpoint is not the best's epoch
    run(small_digits, workspace, "--epochs", 3, "-j", 0)
    monkeypatch.undo()
    (workspace / "model_best.pth.tar").unlink()
    capsys.readouterr()
    run(small_digits, workspace, "--epochs", 3, "-j", 0, "--resume", "auto", "--run-epochs", 1)
    err = [line for line in capsys.readouterr().err.splitlines() if "model_best.pth.tar is missing" in line]
    assert len(err) == 1 and err[0].startswith("warning: ")


def test_the_report_keeps_its_history_across_resumes_and_a_torn_line_is_cut(small_digits, tmp_path, monkeypatch):
    workspace = tmp_path / "ws"
    report = workspace / "experiment_raport.json"
    signal_at_step(monkeypatch, 15, 6)
    run(small_digits, workspace, "--epochs", 3, "-j", 0)
    monkeypatch.undo()
    before = report.read_bytes()
    with open(report, "ab") as f:
        f.write(b'DLLL {"timestamp": "17', )  # a record torn by a kill in the middle of its write
    run(small_digits, workspace, "--epochs", 3, "-j", 0, "--resume", "auto")
    after = report.read_bytes()
    assert after.startswith(before)  # every line of the first run, byte for byte
    lines = after.decode().splitlines()
    assert all(line.startswith("DLLL {") and line.endswith("}") for line in lines)
    epochs = [r["step"][0] for r in read_report(report) if r.get("type") == "LOG" and isinstance(r.get("step"), list)
              and len(r["step"]) == 1]
    # Epoch 0 and the interrupted part of epoch 1 from the first run; epoch 1's rest and epoch 2 from the second.
    assert epochs == [0, 1, 1, 2]


def test_timm_summary_csv_keeps_every_epoch_across_a_resume(small_digits, tmp_path, monkeypatch):
    from gpunet import train

    flags = [str(small_digits), "--model", "efficientnet_b0", "--img-size", "32", "-b", "16", "--epochs", "3",
             "--cooldown-epochs", "0", "--warmup-epochs", "0", "--prof", "3", "--cpu", "-j", "0", "--no-progress",
             "--seed", "1",
             "--output", str(tmp_path), "--experiment", "x"]
    signal_at_step(monkeypatch, 15, 4)
    assert train.main(flags) == 75
    monkeypatch.undo()
    assert train.main([*flags, "--resume", str(tmp_path / "x" / "last.pth.tar")]) == 0
    with open(tmp_path / "x" / "summary.csv", newline="") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2]


# ---------------------------------------------------------------- full disk


def _fill_after(monkeypatch, good_writes: int) -> None:
    """A disk that fills up: atomic writes after the first `good_writes` fail with ENOSPC."""
    import common.atomic_files as atomic_files

    real_fsync, count = atomic_files.os.fsync, [0]

    def fsync(fd):
        count[0] += 1
        if count[0] > good_writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(atomic_files.os, "fsync", fsync)


def test_disk_full_stops_with_one_line_and_the_previous_checkpoint_intact(small_digits, tmp_path, monkeypatch):
    workspace = tmp_path / "ws"
    _fill_after(monkeypatch, good_writes=2)  # epoch 0: the best, then its copy as checkpoint.pth.tar
    with pytest.raises(CheckpointWriteError) as caught:
        run(small_digits, workspace, "--epochs", 3, "-j", 0)
    message = str(caught.value)
    assert "No space left on device" in message and f"{workspace / 'checkpoint.pth.tar'} is intact" in message
    assert "\n" not in message
    assert load(workspace / "checkpoint.pth.tar")["epoch"] == 1
    assert not list(workspace.glob(".*.tmp"))


def _small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_real_full_disk_through_the_command_line(small_digits, tmp_path):
    """On an 80 MB tmpfs: one checkpoint pair fits (2 x 32.5 MB for B0 with its SGD momentum), the next epoch's third
    file does not."""
    disk = tmp_path / "disk"
    if not _small_tmpfs(disk, "80m"):
        pytest.skip("needs root and tmpfs mounts to make a small disk (the fault-injecting test above covers it)")
    try:
        workspace = disk / "ws"
        proc = run_script("efficientnet/main.py", *_train_argv(small_digits, workspace))
        assert_one_line_error(proc, "cannot write a checkpoint", "No space left on device",
                              f"{workspace / 'checkpoint.pth.tar'} is intact")
        assert load(workspace / "checkpoint.pth.tar")["epoch"] == 1
        assert not list(workspace.glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_an_unwritable_workspace_is_one_line(small_digits, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_script("efficientnet/main.py", *_train_argv(small_digits, blocker / "ws"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(blocker) in lines[0], proc.stderr
