"""The parts of serve.py, client.py and perf.py that need no running server: ports, logs, repository checks, the
load generator's bounds and statistics, perf_analyzer's CSV, the report and its plots, and the one-line errors."""
from __future__ import annotations

import socket
from importlib.util import find_spec

import numpy as np
import pytest

from common.cli_errors import UserError
from image_classification.serving import loadgen, perf, perf_analyzer, perf_plots
from image_classification.serving import pytriton_server as server
from image_classification.serving.client import class_index_map, normalise_url
from tests.conftest import REPO, assert_one_line_error, run_script

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_a_port_with_a_listener_is_reported_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is in use.*--http-port"):
            server.check_port_free(port, "--http-port")
    server.check_port_free(port, "--http-port")  # closed again: free


def test_port_zero_picks_distinct_free_ports():
    ports = server.resolve_ports(server.ServeOptions(http_port=0, grpc_port=0, metrics_port=0))
    assert len(set(ports.values())) == 3 and all(p > 0 for p in ports.values())
    with pytest.raises(UserError, match="must differ"):
        free = server.free_port()
        server.resolve_ports(server.ServeOptions(http_port=free, grpc_port=free, metrics_port=0))


def test_log_tail(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    tail = server.log_tail(log).splitlines()
    assert tail == [f"line {i}" for i in range(30, 50)]
    assert "no server log" in server.log_tail(tmp_path / "missing.log")
    (tmp_path / "empty.log").write_text("")
    assert "is empty" in server.log_tail(tmp_path / "empty.log")


def test_libpython_goes_first_on_the_library_path(monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/somewhere")
    libdir = server.expose_libpython()
    if libdir is None:
        pytest.skip("this interpreter is linked statically: nothing to expose")
    import os

    assert os.environ["LD_LIBRARY_PATH"].split(os.pathsep) == [libdir, "/somewhere"]
    assert server.expose_libpython() == libdir and os.environ["LD_LIBRARY_PATH"].count(libdir) == 1


def test_bundled_server_takes_python_backend_repositories_only(tmp_path):
    with pytest.raises(UserError, match="holds no model"):
        server.repository_models(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.pbtxt").write_text('name: "a"\nbackend: "python"\n')
    assert server.repository_models(tmp_path) == {"a": "python"}
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.pbtxt").write_text('name: "b"\nplatform: "onnxruntime_onnx"\nbackend: "onnxruntime"\n')
    with pytest.raises(UserError, match=r"only the python backend.*b \(onnxruntime\)"):
        server.repository_models(tmp_path)


def test_urls_and_class_mapping():
    assert normalise_url(None, "grpc") == "127.0.0.1:8001"
    assert normalise_url("http://localhost:9000/", "http") == "localhost:9000"
    assert normalise_url("myhost", "http") == "myhost:8000"
    assert class_index_map(["3", "1"], [str(i) for i in range(10)], 10) == [3, 1]
    assert class_index_map(["n01", "n02"], ["cat", "dog"], 2) == [0, 1]
    with pytest.raises(UserError, match="the data has 3 classes and the model 2"):
        class_index_map(["a", "b", "c"], ["x", "y"], 2)


def test_load_generator_targets_loopback_only():
    for url in ("127.0.0.1:8000", "localhost:8001", "[::1]:8000"):
        loadgen.require_loopback(url)
    with pytest.raises(UserError, match="only measures a server on this machine"):
        loadgen.require_loopback("192.0.2.1:8000")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"requests": 0}, "--requests"), ({"requests": loadgen.MAX_REQUESTS + 1}, "--requests"),
    ({"seconds": 0}, "--seconds"), ({"seconds": loadgen.MAX_SECONDS + 1}, "--seconds"),
    ({"concurrency": 0}, "concurrency"), ({"warmup": 11}, "--warmup"),
])
def test_load_generator_is_bounded(kwargs, fragment):
    args = {"requests": 10, "seconds": 1.0, "concurrency": 1, "warmup": 0} | kwargs
    with pytest.raises(UserError, match=fragment.replace("-", r"\-")):
        loadgen.check_bounds(**args)


def test_measurement_statistics():
    m = loadgen.Measurement(batch_size=4, concurrency=2, latencies_s=[i / 1000 for i in range(1, 101)], seconds=2.0)
    row = m.row()
    assert row["requests"] == 100 and row["inferences_per_second"] == pytest.approx(200.0)
    assert row["latency_avg_ms"] == pytest.approx(50.5)
    for p in loadgen.PERCENTILES:
        assert row[f"latency_p{p}_ms"] == pytest.approx(np.percentile(np.arange(1, 101), p))


def test_perf_analyzer_csv_is_read_in_milliseconds(tmp_path):
    report = tmp_path / "pa.csv"
    report.write_text("Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
                      "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,"
                      "p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait\n"
                      "4,1234.5,10,200,30,40,1500,20,5,1800,2100,2300,2900,1850,210,1600\n")
    row = perf_analyzer.parse_csv(report, batch_size=1, concurrency=4).row()
    assert row["tool"] == "perf_analyzer" and row["inferences_per_second"] == 1234.5
    assert (row["latency_p50_ms"], row["latency_p99_ms"], row["latency_avg_ms"]) == (1.8, 2.9, 1.85)


def test_report_csv_and_plots(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib draws the plots (the [plot] extra)")
    offline = [{"mode": "offline", **loadgen.Measurement(b, 1, [0.001 * b] * 5, seconds=0.01 * b).row()}
               for b in (1, 2, 4)]
    online = [{"mode": "online", **loadgen.Measurement(1, c, [0.002 * c] * 5, seconds=0.01).row()} for c in (1, 4)]
    csv_path = perf.write_csv(offline + online, tmp_path / "perf.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == list(perf.COLUMNS) and len(lines) == 6
    for path in (perf_plots.plot_offline(offline, tmp_path / "a.png", "t"),
                 perf_plots.plot_throughput_vs_latency(online, tmp_path / "b.png", "t"),
                 perf_plots.plot_latency_vs_concurrency(online, tmp_path / "c.png", "t")):
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert perf.default_batch_sizes(64) == (1, 2, 4, 8, 16, 32, 64) and perf.default_batch_sizes(12) == (1, 2, 4, 8)


def test_serve_refuses_two_sources_in_one_line(tmp_path):
    result = run_script(REPO / "triton" / "serve.py", "--weights", tmp_path / "a.pth", "--repository", tmp_path)
    assert_one_line_error(result, "one of the two")


@pytest.mark.skipif(find_spec("pytriton") is not None, reason="PyTriton is installed here")
def test_serve_without_pytriton_says_how_to_get_it(tmp_path):
    result = run_script(REPO / "triton" / "serve.py", "--weights", tmp_path / "a.pth")
    assert_one_line_error(result, "PyTriton is not installed", "numpy<2")


def test_client_without_a_server_or_tritonclient_is_one_line(tmp_path):
    (tmp_path / "val" / "0").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "0" / "a.png")
    result = run_script(REPO / "triton" / "client.py", "--url", f"127.0.0.1:{server.free_port()}", "--model", "m",
                        "--data", tmp_path)
    fragment = "no Triton server answers" if find_spec("tritonclient") else "tritonclient is not installed"
    assert_one_line_error(result, fragment)


def test_perf_refuses_a_remote_server_before_sending_anything(tmp_path):
    result = run_script(REPO / "triton" / "perf.py", "--url", "192.0.2.1:8000", "--model", "m", "--output",
                        tmp_path / "out", "--tool", "loadgen")
    assert_one_line_error(result, "only measures a server on this machine")
    assert not (tmp_path / "out").exists()
