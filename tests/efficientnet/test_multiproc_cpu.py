"""Both launchers start a real two-process training on the CPU (gloo): upstream's `multiproc.py --nproc_per_node 2`
and torchrun. Each run must train on both ranks with one global batch and leave only rank 0's outputs."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_flags(digits_root, workspace) -> list[str]:
    return [str(digits_root), "--cpu", "--epochs", "1", "--prof", "3", "-b", "16", "--image-size", "32", "-j", "0",
            "--print-freq", "1", "--no-progress", "--workspace", str(workspace)]


LAUNCHERS = {
    "multiproc": lambda port: ["efficientnet/multiproc.py", "--nproc_per_node", "2", "--master_port", str(port)],
    "torchrun": lambda port: ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master-addr", "127.0.0.1",
                              "--master-port", str(port)],
}


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_processes_train_and_only_rank_0_writes(launcher, digits_root, tmp_path):
    workspace = tmp_path / "ws"
    argv = [sys.executable, *LAUNCHERS[launcher](_free_port()), "efficientnet/main.py",
            *_train_flags(digits_root, workspace)]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in workspace.iterdir())
    assert files in (["checkpoint.pth.tar", "experiment_raport.json", "model_best.pth.tar", "summary.json"],
                     ["checkpoint.pth.tar", "experiment_raport.json", "summary.json"]), files
    summary = json.loads((workspace / "summary.json").read_text())
    # Two ranks: every validation step covers 2 x 16 images, so the global count is twice one rank's.
    assert summary["val"]["images"] == 2 * 3 * 16, summary["val"]
    assert summary["world_size"] == 2
