"""Serve a trained classifier with PyTriton (nvidia-pytriton bundles a real Triton Inference Server) on 127.0.0.1.

Two ways: bind a checkpoint (`ServeOptions.weights`: the model runs in this process on the project's fast path,
Triton batches the requests), or hand Triton a model repository written by `deploy.py --format python`
(`ServeOptions.repository`; the bundled server has only the Python backend, so ONNX and TensorRT entries need the
NGC tritonserver image). Either way the server listens on loopback only, says its ports, and stops cleanly on
SIGINT or SIGTERM; a port in use, a server that does not come up, or one that dies are one message each (the last
two with the tail of the server's log).

PyTriton pins numpy<2: install it in its own environment (the nox `triton` session does).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import sysconfig
import tempfile
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from common.atomic_files import atomic_write
from common.cli_errors import UserError

from . import model_config as mc

if TYPE_CHECKING:
    from image_classification.models.checkpoint import QuantizerRestorer

HOST = "127.0.0.1"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
LOG_TAIL_LINES = 20
_ERROR_LINE = re.compile(r"^E\d{4} ")
_BACKEND_LINE = re.compile(r'^\s*backend\s*:\s*"([^"]*)"', re.MULTILINE)


@dataclass
class ServeOptions:
    weights: str | None = None
    arch: str | None = None
    pretrained: bool = False
    repository: str | None = None
    model_name: str | None = None
    device: str = "cpu"
    precision: str | None = None
    compile: bool = True
    max_batch_size: int = 16
    instances: int = 1
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 100
    http_port: int = DEFAULT_PORTS["http"]
    grpc_port: int = DEFAULT_PORTS["grpc"]
    metrics_port: int = DEFAULT_PORTS["metrics"]
    startup_timeout: float = 120.0
    exit_timeout: int = 5
    log_file: str | None = None
    ready_file: str | None = None
    verbose: bool = False
    log: object = field(default=print, repr=False)
    # quantization.state.restore_quantizers, from the command line above the quantization package: lets the
    # checkpoint be INT8-quantized (without it one is refused).
    restore_quantizers: QuantizerRestorer | None = field(default=None, repr=False)


# --- environment --------------------------------------------------------------------------------------------------


def import_pytriton():
    try:
        import pytriton.triton as pytriton_triton
    except ImportError as exc:
        raise UserError(f"PyTriton is not installed ({exc}): pip install nvidia-pytriton in its own virtual "
                        "environment (it pins numpy<2), e.g. nox -s triton, or pip install -e '.[triton]'") from None
    return pytriton_triton


def expose_libpython() -> str | None:
    """Put this interpreter's libpython first on LD_LIBRARY_PATH, for the server's children to inherit.

    Triton's Python backend stub links libpython3.X.so dynamically; where this interpreter is not the system's (pyenv,
    conda, a python.org build), the stub would otherwise load the system's libpython, whose standard library does not
    match this one's (the model then fails to initialise with odd AttributeErrors). Returns the folder added.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    library = sysconfig.get_config_var("LDLIBRARY") or ""
    if not libdir or not library.endswith(".so") and ".so." not in library:
        return None  # a statically linked interpreter: nothing to point at
    if not (Path(libdir) / library).exists():
        return None
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if current.split(os.pathsep)[:1] == [libdir]:
        return libdir
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *[p for p in current.split(os.pathsep) if p]])
    return libdir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def check_port_free(port: int, flag: str) -> None:
    if not 1 <= port <= 65535:
        raise UserError(f"{flag} must be a port number in 1..65535 (or 0 for any free port), got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as servers set it: a port in TIME_WAIT is free, one with a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            raise UserError(f"port {port} on {HOST} is in use ({exc.strerror}): stop what listens there or pick "
                            f"another {flag} (0 picks a free one)") from None


def resolve_ports(options: ServeOptions) -> dict[str, int]:
    ports = {"http": options.http_port, "grpc": options.grpc_port, "metrics": options.metrics_port}
    for name, port in ports.items():
        if port != 0:
            check_port_free(port, f"--{name}-port")
    taken = {p for p in ports.values() if p}
    if len(taken) != sum(1 for p in ports.values() if p):
        raise UserError(f"--http-port, --grpc-port and --metrics-port must differ, got {ports}")
    for name, port in ports.items():
        if port == 0:
            port = free_port()
            while port in taken:
                port = free_port()
            ports[name] = port
            taken.add(port)
    return ports


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The server log's error lines (Triton's glog `E<mmdd>` lines, which its startup tables would push out of a
    plain tail) followed by its last lines."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            recent = [line.rstrip("\n") for line in deque(f, maxlen=2000) if line.strip()]
    except OSError:
        return f"(no server log at {path}: the server wrote nothing)"
    if not recent:
        return f"(the server log {path} is empty)"
    errors = [line for line in recent if _ERROR_LINE.match(line)][-(lines // 2):]
    tail = [line for line in recent[-(lines - len(errors)):] if line not in errors]
    return "\n".join(errors + (["..."] if errors and tail else []) + tail)


# --- what to serve ------------------------------------------------------------------------------------------------


def repository_models(repository: Path) -> dict[str, str]:
    """{model name: backend} of a model repository; only Python-backend entries run on PyTriton's server."""
    if not repository.is_dir():
        raise UserError(f"model repository {repository} is not a directory: write one with triton/deploy.py")
    models = {}
    for entry in sorted(repository.iterdir()):
        config = entry / "config.pbtxt"
        if entry.is_dir() and not entry.name.startswith(".") and config.is_file():
            match = _BACKEND_LINE.search(config.read_text(encoding="utf-8", errors="replace"))
            models[entry.name] = match.group(1) if match else "?"
    if not models:
        raise UserError(f"{repository} holds no model (no <name>/config.pbtxt): write one with triton/deploy.py")
    other = {name: backend for name, backend in models.items() if backend != "python"}
    if other:
        shown = ", ".join(f"{n} ({b})" for n, b in other.items())
        raise UserError(f"PyTriton's bundled Triton has only the python backend, and {repository} holds {shown}: "
                        "serve those with the NGC tritonserver image (docker/Dockerfile.triton), or deploy with "
                        "--format python")
    return models


def _infer_function(model):
    from pytriton.decorators import batch

    @batch
    def infer(**inputs):
        return {mc.OUTPUT_NAME: model(inputs[mc.INPUT_NAME])}

    return infer


def load_models(options: ServeOptions) -> list:
    """One ServingModel per instance (each its own copy: instances run concurrently)."""
    from .inference import load_serving_model

    return [load_serving_model(options.weights, arch=options.arch, pretrained=options.pretrained,
                               device=options.device, precision=options.precision,
                               max_batch_size=options.max_batch_size, compile=options.compile,
                               restore_quantizers=options.restore_quantizers)
            for _ in range(options.instances)]


def _bind(triton, models: list, options: ServeOptions, log) -> list[str]:
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    first = models[0]
    name = mc.check_model_name(options.model_name or first.arch)
    batcher = DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us,
                             preferred_batch_size=sorted(set(options.preferred_batch_sizes)) or None)
    triton.bind(
        model_name=name,
        infer_func=[_infer_function(m) for m in models],
        inputs=[Tensor(name=mc.INPUT_NAME, dtype=np.float32, shape=(3, first.image_size, first.image_size))],
        outputs=[Tensor(name=mc.OUTPUT_NAME, dtype=np.float32, shape=(first.num_classes,))],
        config=ModelConfig(max_batch_size=options.max_batch_size, batcher=batcher),
        strict=True,
    )
    log(f"=> {name}: {first.describe()}, max batch {options.max_batch_size}, dynamic batching (queue delay "
        f"{options.max_queue_delay_us} us), {options.instances} instance(s)")
    return [name]


# --- serving ------------------------------------------------------------------------------------------------------


class _Stop:
    """SIGINT/SIGTERM set an event instead of raising in whatever the main thread is doing."""

    def __init__(self):
        self.event = threading.Event()
        self.signal_name = None
        self._previous = {}

    def _handle(self, signum, _frame):
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _NotUp(Exception):
    """The server died or did not answer in time while starting."""


def _wait_until_ready(http_port: int, timeout: float, server_alive, stop: threading.Event) -> None:
    import tritonclient.http as httpclient

    deadline = time.monotonic() + timeout
    client = httpclient.InferenceServerClient(f"{HOST}:{http_port}", connection_timeout=2.0, network_timeout=2.0)
    try:
        while not stop.is_set():
            try:
                if client.is_server_ready():
                    return
            except Exception:  # connection refused until the server listens
                pass
            if not server_alive():
                raise _NotUp("the Triton server exited while starting")
            if time.monotonic() >= deadline:
                raise _NotUp(f"the Triton server did not come up within {timeout:g} s")
            stop.wait(0.2)
    finally:
        client.close()


def _start(triton, http_port: int, timeout: float, stop: threading.Event) -> None:
    """Start the server and wait for it, noticing at once when it dies (PyTriton's own wait, `run()`, polls a dead
    server until its timeout); then `connect()` loads the bound models. Falls back to `run()` where a PyTriton
    version lacks the two methods used."""
    run_server = getattr(triton, "_run_server", None)
    server_alive = getattr(triton, "_is_alive_impl", None)
    try:
        if run_server is None or server_alive is None:
            triton.run()
            return
        run_server()
        _wait_until_ready(http_port, timeout, server_alive, stop)
        if not stop.is_set():
            triton.connect()
    except _NotUp:
        raise
    except Exception as exc:  # PyTriton raises TimeoutError and its own types, all meaning "not up"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _NotUp(f"the Triton server did not come up within {timeout:g} s ({reason})") from None


def _check_options(options: ServeOptions) -> None:
    if (options.weights is None and not options.pretrained) == (options.repository is None):
        raise UserError("serve either a checkpoint (--weights, or --pretrained with --model) or a model repository "
                        "written by deploy.py --format python (--repository), one of the two")
    if options.weights is not None and options.pretrained:
        raise UserError("give either --weights or --pretrained, not both")
    mc.check_batching(options.max_batch_size, options.preferred_batch_sizes, options.max_queue_delay_us,
                      options.instances)
    if options.startup_timeout <= 0:
        raise UserError(f"--startup-timeout must be positive, got {options.startup_timeout}")
    if options.exit_timeout < 0:
        raise UserError(f"--exit-timeout must not be negative, got {options.exit_timeout}")
    if options.model_name is not None:
        mc.check_model_name(options.model_name)


def serve(options: ServeOptions) -> int:
    """Serve until SIGINT/SIGTERM; returns 0 after a clean stop. A server that does not come up or dies raises
    UserError with the tail of its log (which is then kept)."""
    log = options.log
    _check_options(options)
    pytriton_triton = import_pytriton()
    from pytriton.triton import Triton, TritonConfig

    ports = resolve_ports(options)
    served = repository_models(Path(options.repository)) if options.repository else None
    # Weights are loaded (and compiled, on a GPU) before the server starts: a bad checkpoint is one line, and the
    # first request does not wait for a compiler.
    models = load_models(options) if served is None else []
    scratch = Path(tempfile.mkdtemp(prefix="triton-serve-"))
    log_path = Path(options.log_file) if options.log_file else scratch / "tritonserver.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    libdir = expose_libpython()
    import torch

    config = TritonConfig(
        http_address=HOST, grpc_address=HOST, metrics_address=HOST, http_port=ports["http"],
        grpc_port=ports["grpc"], metrics_port=ports["metrics"], exit_timeout_secs=options.exit_timeout,
        # Without a GPU, DCGM's NVML probe only prints an error line.
        allow_gpu_metrics=torch.cuda.is_available(), log_file=log_path,
        model_repository=Path(options.repository).resolve() if options.repository else None,
    )
    # PyTriton waits for the server with a module-level timeout (120 s); ours replaces it. Its warning that the
    # client's network timeout exceeds a short wait, and its INFO/WARNING chatter, say nothing our lines do not.
    pytriton_triton.DEFAULT_TRITON_STARTUP_TIMEOUT_S = options.startup_timeout
    warnings.filterwarnings("ignore", message=r"Client network and/or connection timeout")
    if not options.verbose:
        logging.getLogger("pytriton").setLevel(logging.ERROR)
    failed, triton = True, None
    try:
        triton = Triton(config=config, workspace=scratch / "workspace")
        names = list(served) if served is not None else _bind(triton, models, options, log)
        with _Stop() as stop:
            try:
                _start(triton, ports["http"], options.startup_timeout, stop.event)
            except _NotUp as exc:
                triton.stop()  # first, so that the log holds all the server had to say
                raise UserError(f"{exc}; last lines of its log {log_path}:\n{log_tail(log_path)}") from None
            if stop.event.is_set():
                log(f"=> {stop.signal_name} received while starting: stopping")
                failed = False
                return 0
            urls = {"http": f"{HOST}:{ports['http']}", "grpc": f"{HOST}:{ports['grpc']}",
                    "metrics": f"{HOST}:{ports['metrics']}"}
            if options.ready_file:
                with atomic_write(options.ready_file, "w") as f:
                    json.dump({"pid": os.getpid(), "models": names, **{f"{k}_port": v for k, v in ports.items()},
                               "log": str(log_path)}, f)
            log(f"=> serving {', '.join(names)} on HTTP {urls['http']}, gRPC {urls['grpc']}, metrics "
                f"http://{urls['metrics']}/metrics")
            log(f"   server log: {log_path}" + (f" (libpython from {libdir})" if libdir else "")
                + "; stop with Ctrl+C or SIGTERM")
            while not stop.event.wait(0.5):
                if not triton.is_alive():
                    raise UserError(f"the Triton server stopped on its own; last lines of its log {log_path}:\n"
                                    f"{log_tail(log_path)}")
            log(f"=> {stop.signal_name} received: stopping the server (exit timeout {options.exit_timeout} s)")
            failed = False
            return 0
    finally:
        if triton is not None:
            triton.stop()
        if options.ready_file:
            Path(options.ready_file).unlink(missing_ok=True)
        # A failure's message names the log, which then stays; everything else of ours goes.
        if options.log_file is None and not (failed and log_path.is_file()):
            shutil.rmtree(scratch, ignore_errors=True)
        if not failed:
            log("=> stopped")
