"""One workspace, one run: a live run's folder is refused to a second run, a finished or interrupted run is never
replaced by accident, and the leftovers of a killed write are cleaned up at the next start."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from common.cli_errors import UserError
from common.workspace_lock import LOCK_NAME, WorkspaceLock
from tests.conftest import REPO, assert_one_line_error, run_script
from tests.image_classification.training.helpers import load, run

SHORT = ["--epochs", 2, "-j", 0]


def _holder_subprocess(workspace) -> subprocess.Popen:
    """Another process that holds the workspace's lock until told to let go (a line on its stdin)."""
    code = ("import sys; from common.workspace_lock import WorkspaceLock; lock = WorkspaceLock(sys.argv[1]); "
            "lock.acquire(); print('held', flush=True); sys.stdin.readline(); lock.release()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(workspace)], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_in_a_live_runs_workspace_is_refused_in_one_line(small_digits, tmp_path):
    workspace = tmp_path / "ws"
    holder = _holder_subprocess(workspace)
    try:
        proc = run_script("efficientnet/main.py", small_digits, "--workspace", workspace, "--image-size", 32,
                          "-b", 16, "--epochs", 1, "-j", 0, "--cpu", "--no-progress")
        assert_one_line_error(proc, str(workspace), "in use by another run", f"pid {holder.pid}")
        assert sorted(p.name for p in workspace.iterdir()) == [LOCK_NAME]  # nothing of the refused run
    finally:
        holder.communicate("go\n", timeout=60)
    assert not (workspace / LOCK_NAME).exists()  # a run that ends removes its lock file


def test_a_lock_file_left_by_a_killed_run_does_not_block_the_next(small_digits, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # What a SIGKILLed run leaves: the file, naming a process that no longer holds any lock.
    (workspace / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "elsewhere", "started": "yesterday"}))
    summary = run(small_digits, workspace, *SHORT)
    assert summary["epochs_done"] == 2
    assert not (workspace / LOCK_NAME).exists()


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with WorkspaceLock(tmp_path):
        with pytest.raises(UserError, match="in use by another run"):
            WorkspaceLock(tmp_path).acquire()
    WorkspaceLock(tmp_path).acquire()  # released: free again


def test_a_plain_rerun_never_replaces_a_run_and_overwrite_or_resume_say_what_to_do(small_digits, tmp_path, capsys):
    workspace = tmp_path / "ws"
    run(small_digits, workspace, *SHORT, "--gather-checkpoints", -1)
    before = load(workspace / "checkpoint.pth.tar")["state_dict"]
    with pytest.raises(UserError, match="holds another run's checkpoints .*--resume .*checkpoint.pth.tar.*--overwrite"):
        run(small_digits, workspace, *SHORT)
    after = load(workspace / "checkpoint.pth.tar")["state_dict"]
    assert all((before[k] == after[k]).all() for k in before)  # untouched

    # --overwrite starts afresh and removes the old run's files (per-epoch checkpoints of a longer run included).
    capsys.readouterr()
    run(small_digits, workspace, "--epochs", 1, "-j", 0, "--overwrite")
    assert "--overwrite: removed the previous run's" in capsys.readouterr().out
    assert sorted(p.name for p in workspace.glob("checkpoint_*.pth.tar")) == []
    assert load(workspace / "checkpoint.pth.tar")["epoch"] == 1

    # --resume auto continues the workspace's own run; the same line starts a fresh run in an empty one.
    summary = run(small_digits, workspace, *SHORT, "--resume", "auto")
    assert summary["epochs_done"] == 2 and load(workspace / "checkpoint.pth.tar")["epoch"] == 2
    assert run(small_digits, tmp_path / "fresh", *SHORT, "--resume", "auto")["epochs_done"] == 2


def test_an_evaluation_may_share_a_training_workspace_but_not_replace_its_report(small_digits, tmp_path):
    workspace = tmp_path / "ws"
    run(small_digits, workspace, "--epochs", 1, "-j", 0)
    weights = workspace / "model_best.pth.tar"
    run(small_digits, workspace, "--evaluate", "--pretrained-from-file", weights, "--raport-file", "eval.json")
    with pytest.raises(UserError, match="holds another run's checkpoints"):
        run(small_digits, workspace, "--evaluate", "--pretrained-from-file", weights)  # experiment_raport.json


def test_temporaries_of_killed_writes_are_removed_at_the_next_start(small_digits, tmp_path, capsys):
    workspace = tmp_path / "ws"
    run(small_digits, workspace, "--epochs", 2, "--run-epochs", 1, "-j", 0)
    # What a SIGKILL in the middle of atomic writes leaves (mkstemp's names): 10 MB that nothing would ever remove.
    stale = [workspace / ".checkpoint.pth.tar.k3j_9x2a.tmp", workspace / ".model_best.pth.tar.0abcdefg.tmp"]
    for path in stale:
        path.write_bytes(os.urandom(1024) * 10240)
    keep = workspace / "notes.tmp"  # not one of ours: left alone
    keep.write_text("mine")
    capsys.readouterr()
    run(small_digits, workspace, "--epochs", 2, "-j", 0, "--resume", "auto")
    assert "removed 2 unfinished temporary file(s)" in capsys.readouterr().out
    assert not any(p.exists() for p in stale) and keep.exists()
