"""Two CPU ranks (gloo) under the launchers: a group SIGTERM saves and multiproc.py exits 75; a stopped rank makes
the other fail after --dist-timeout with one line instead of hanging for PyTorch's 30 minutes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.cli_errors import EXIT_RESUMABLE
from common.dllogger import read_report
from tests.conftest import REPO
from tests.image_classification.training.helpers import load, max_weight_diff

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _multiproc(data, workspace, *extra) -> list[str]:
    return [sys.executable, "efficientnet/multiproc.py", "--nproc_per_node", "2", "--master_port", str(_free_port()),
            "efficientnet/main.py", str(data), "--workspace", str(workspace), "--image-size", "32", "-b", "8",
            "--epochs", "20", "--lr", "0.02", "--seed", "2", "--bn_momentum", "0.1", "--use-ema", "0.9", "-j", "2",
            "--print-freq", "1", "--no-progress", "--cpu", *map(str, extra)]


def _wait_for_training(proc: subprocess.Popen, report: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if report.is_file() and any(r.get("type") == "LOG" and isinstance(r.get("step"), list) and len(r["step"]) == 2
                                    for r in read_report(report)):
            return
        time.sleep(0.2)
    raise AssertionError(f"training did not start (exit status {proc.poll()})")


def test_group_sigterm_stops_both_ranks_resumably_and_the_resumed_run_matches(small_digits, tmp_path):
    part = tmp_path / "part"
    proc = subprocess.Popen(_multiproc(small_digits, part), cwd=REPO, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _wait_for_training(proc, part / "experiment_raport.json")
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_RESUMABLE, out[-2000:] + err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "stopped by SIGTERM" in out
    saved = load(part / "checkpoint.pth.tar")
    assert saved["world_size"] == 2 and saved["epoch"] < 2

    resumed = subprocess.run(_multiproc(small_digits, part, "--resume", "auto", "--run-epochs", 2 - saved["epoch"]),
                             cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full = subprocess.run(_multiproc(small_digits, tmp_path / "full", "--run-epochs", 2), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    a, b = load(tmp_path / "full" / "checkpoint.pth.tar"), load(part / "checkpoint.pth.tar")
    assert a["epoch"] == b["epoch"] == 2
    assert max_weight_diff(a["state_dict"], b["state_dict"]) == 0.0
    assert max_weight_diff(a["state_dict_ema"], b["state_dict_ema"]) == 0.0


def _rank_pid(launcher_pid: int, rank: str) -> int:
    """The PID of the training process with RANK=`rank` below the launcher."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and _descends_from(int(proc.name), launcher_pid):
            return int(proc.name)
    raise AssertionError(f"no rank {rank} below {launcher_pid}")


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def test_a_stopped_rank_makes_the_other_fail_after_dist_timeout_with_one_line(small_digits, tmp_path):
    workspace = tmp_path / "ws"
    proc = subprocess.Popen(_multiproc(small_digits, workspace, "--dist-timeout", 10), cwd=REPO, env=_env(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _wait_for_training(proc, workspace / "experiment_raport.json")
    stopped = _rank_pid(proc.pid, "1")
    os.kill(stopped, signal.SIGSTOP)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if Path(f"/proc/{stopped}").exists():
            os.kill(stopped, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors and "rank 0: no answer from the other processes within --dist-timeout 10 s" in errors[0], err[-3000:]
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
