"""A real Triton server (PyTriton's bundled tritonserver) on 127.0.0.1 with a model trained on the digits: the
accuracy through the server (HTTP and gRPC) equals the accuracy of PyTorch here, a short perf sweep writes its CSV
and plots, bad input gets one line, and after SIGINT/SIGTERM no server process is left. The same for a
Python-backend repository written by deploy.py. Runs in the nox `triton` session (PyTriton pins numpy<2)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_one_line_error, run_script

pytest.importorskip("pytriton", reason="PyTriton is not installed (nox -s triton builds its environment)")
pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (the project's [triton] extra)")
psutil = pytest.importorskip("psutil", reason="psutil finds the server's processes")

SERVE = REPO / "triton" / "serve.py"
CLIENT = REPO / "triton" / "client.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Bounds a hang, not a speed: the server and its model come up in seconds on two CPU cores.
READY_WITHIN_S = 240


@dataclass
class Server:
    process: subprocess.Popen
    folder: Path  # the server's TMPDIR: every file and process it makes carries this path
    ready: dict
    stdout: Path
    stderr: Path

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.ready['http_port']}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ready['grpc_port']}"

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()


def processes_under(folder: Path) -> list[str]:
    """Live processes whose command line mentions `folder` (tritonserver and its Python-backend stubs do)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(folder) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE and proc.pid != os.getpid():
                found.append(f"{proc.pid}: {cmdline[:160]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def launch(folder: Path, *args) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(folder))
    command = [sys.executable, str(SERVE), *map(str, args)]
    with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, text=True)


def start_server(folder: Path, *args) -> Server:
    ready_file = folder / "ready.json"
    process = launch(folder, *args, "--http-port", 0, "--grpc-port", 0, "--metrics-port", 0,
                     "--ready-file", ready_file)
    deadline = time.monotonic() + READY_WITHIN_S
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"serve.py did not come up (exit {process.returncode}):\n"
                        f"{(folder / 'stdout.txt').read_text()}\n{(folder / 'stderr.txt').read_text()}")
        time.sleep(0.2)
    ready = json.loads(ready_file.read_text())
    assert ready["pid"] == process.pid
    return Server(process, folder, ready, folder / "stdout.txt", folder / "stderr.txt")


def stop(server: Server, sig: signal.Signals) -> int:
    server.process.send_signal(sig)
    try:
        return server.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        pytest.fail(f"serve.py did not stop after {sig.name}:\n{server.output()}")


def assert_stopped_cleanly(server: Server, code: int, sig: signal.Signals) -> None:
    assert code == 0, server.output()
    out = server.stdout.read_text()
    assert f"{sig.name} received: stopping the server" in out and out.rstrip().endswith("=> stopped"), out
    assert processes_under(server.folder) == []
    assert not (server.folder / "ready.json").exists()
    leftovers = [p.name for p in server.folder.iterdir() if p.name not in ("stdout.txt", "stderr.txt")]
    assert leftovers == [], leftovers  # the workspace, the server log and PyTriton's model folders are gone


@pytest.fixture(scope="module")
def checkpoint(trained_digits) -> Path:
    return trained_digits[1] / "model_best.pth.tar"


@pytest.fixture(scope="module")
def live(checkpoint, tmp_path_factory):
    """serve.py binding the digits model with PyTriton; the last test of this module stops it."""
    server = start_server(tmp_path_factory.mktemp("pytriton"), "--weights", checkpoint, "--max-batch-size", 16,
                          "--preferred-batch-sizes", 8, 16, "--model-name", "digits")
    yield server
    if server.process.poll() is None:  # a test failed before the stop test: do not leave it running
        server.process.kill()
        server.process.wait()


def test_server_says_where_it_listens(live):
    out = live.stdout.read_text()
    assert f"=> serving digits on HTTP {live.http}, gRPC {live.grpc}" in out
    assert live.ready["models"] == ["digits"]
    assert any("tritonserver" in p for p in processes_under(live.folder))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_accuracy_through_the_server_equals_local(live, checkpoint, digits_root, protocol, tmp_path):
    from image_classification.serving.client import ClientOptions, run_client

    dump = tmp_path / "predictions.json"
    report = run_client(ClientOptions(data=str(digits_root), model="digits", url=getattr(live, protocol),
                                      protocol=protocol, weights=str(checkpoint), dump=str(dump), log=lambda _: None))
    served, local = report["server"], report["local"]
    assert served["images"] == local["images"] == 359  # the whole held-out split
    assert served["top1"] == local["top1"] and served["top5"] == local["top5"]
    assert served["top1"] > 80.0  # the model did learn: equality of two random models would prove nothing
    assert report["agreement"]["max_abs_logit_difference"] < 1e-3
    saved = json.loads(dump.read_text())
    assert len(saved["predictions"]) == 359
    first = saved["predictions"][0]
    assert first["label_name"] == "0" and first["top5"][0]["class"] in [str(d) for d in range(10)]


def test_short_perf_sweep_writes_csv_and_plots(live, tmp_path):
    from image_classification.serving.perf import PerfOptions, run_perf

    summary = run_perf(PerfOptions(model="digits", output=str(tmp_path), url=live.http, batch_sizes=(1, 8),
                                   concurrency=(1, 4), requests=20, seconds=5.0, warmup=2, log=lambda _: None))
    rows = summary["rows"]
    assert [(r["mode"], r["batch_size"], r["concurrency"]) for r in rows] == [
        ("offline", 1, 1), ("offline", 8, 1), ("online", 1, 1), ("online", 1, 4)]
    for row in rows:
        assert row["errors"] == 0 and 0 < row["requests"] <= 20 and row["inferences_per_second"] > 0
        assert row["latency_p50_ms"] <= row["latency_p90_ms"] <= row["latency_p95_ms"] <= row["latency_p99_ms"]
    lines = (tmp_path / "perf.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("mode,tool,batch_size,concurrency")
    for name in ("latency_vs_batch.png", "throughput_vs_latency.png", "latency_vs_concurrency.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)


def test_client_pointed_at_a_model_that_is_not_loaded(live, digits_root):
    result = run_script(CLIENT, "--url", live.grpc, "--protocol", "grpc", "--model", "resnet50", "--data",
                        digits_root)
    assert_one_line_error(result, "model 'resnet50' is not loaded on the Triton server at " + live.grpc)


def test_a_port_in_use_is_one_line(live, checkpoint):
    result = run_script(SERVE, "--weights", checkpoint, "--http-port", live.ready["http_port"])
    assert_one_line_error(result, f"port {live.ready['http_port']} on 127.0.0.1 is in use")


def test_sigint_stops_the_server_and_leaves_no_process(live):
    assert_stopped_cleanly(live, stop(live, signal.SIGINT), signal.SIGINT)


@pytest.fixture(scope="module")
def python_repo(checkpoint, tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("python_repo") / "repo"
    deployed = run_script(REPO / "triton" / "deploy.py", "--weights", checkpoint, "--repository", repo, "--format",
                          "python", "--instance-kind", "cpu", "--max-batch-size", 16, "--model-name", "digits-py")
    assert deployed.returncode == 0, deployed.stderr
    return repo


def test_python_backend_repository_from_deploy(python_repo, checkpoint, digits_root, tmp_path):
    from image_classification.serving.client import ClientOptions, run_client

    server = start_server(tmp_path / "server", "--repository", python_repo)
    try:
        assert server.ready["models"] == ["digits-py"]
        # The preprocessing comes from the deployed configuration; the checkpoint only adds the local comparison.
        report = run_client(ClientOptions(data=str(digits_root), model="digits-py", url=server.http,
                                          weights=str(checkpoint), log=lambda _: None))
        assert report["server"]["top1"] == report["local"]["top1"] > 80.0
        assert report["agreement"]["max_abs_logit_difference"] < 1e-3
        without_weights = run_client(ClientOptions(data=str(digits_root), model="digits-py", url=server.http,
                                                   limit=40, log=lambda _: None))
        assert without_weights["server"]["images"] == 40 and "local" not in without_weights
    finally:
        code = stop(server, signal.SIGTERM)
    assert_stopped_cleanly(server, code, signal.SIGTERM)


def test_a_server_that_dies_while_starting_is_reported_with_its_log(python_repo, tmp_path):
    broken = tmp_path / "repo"
    shutil.copytree(python_repo, broken)
    (broken / "digits-py" / "1" / "model.pth.tar").write_bytes(b"not a checkpoint")
    # Triton gives up on the model and exits; serve.py notices at once (not at its timeout) and shows the log's why.
    process = launch(tmp_path / "server", "--repository", broken, "--http-port", 0, "--grpc-port", 0,
                     "--metrics-port", 0, "--log-file", tmp_path / "server.log")
    assert process.wait(timeout=180) == 2
    err = (tmp_path / "server" / "stderr.txt").read_text()
    first, *tail = err.splitlines()
    assert first == f"error: the Triton server exited while starting; last lines of its log {tmp_path / 'server.log'}:"
    assert any("failed to load 'digits-py'" in line and "cannot read checkpoint" in line for line in tail), err
    assert processes_under(tmp_path) == []


def test_a_server_that_does_not_come_up_in_time_is_stopped(checkpoint, tmp_path):
    # No server answers a millisecond after it was started: the timeout path, deterministically.
    process = launch(tmp_path / "server", "--weights", checkpoint, "--startup-timeout", 0.001, "--http-port", 0,
                     "--grpc-port", 0, "--metrics-port", 0, "--log-file", tmp_path / "server.log")
    assert process.wait(timeout=120) == 2
    err = (tmp_path / "server" / "stderr.txt").read_text()
    assert err.startswith("error: the Triton server did not come up within 0.001 s; last lines of its log "
                          f"{tmp_path / 'server.log'}:"), err
    assert processes_under(tmp_path) == []
