"""A bounded load generator for a Triton server on this machine, for where perf_analyzer is not installed.

`concurrency` coroutines share one tritonclient asyncio client (HTTP or gRPC); each sends a request, waits for the
answer, and sends the next, until `requests` have been sent or `seconds` have passed, whichever comes first. Both
caps are required and limited (MAX_REQUESTS, MAX_SECONDS), and only loopback addresses are accepted: this is a
measuring tool for one's own server, not a way to load somebody else's (perf_analyzer is the tool for remote
servers). Latency is client-side, request sent to answer decoded; the first `warmup` requests are not counted.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field

import numpy as np

from common.cli_errors import UserError

from .client import NUMPY_TYPES, ModelInterface, normalise_url

MAX_REQUESTS = 100_000
MAX_SECONDS = 600.0
MAX_CONCURRENCY = 1024
PERCENTILES = (50, 90, 95, 99)


@dataclass
class Measurement:
    """One point of a sweep: `requests` answered in `seconds` of wall time."""

    batch_size: int
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    first_error: str | None = None
    tool: str = "loadgen"
    # perf_analyzer reports only its summary: it fills these instead of latencies_s.
    summary: dict | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_s) if self.summary is None else int(self.summary.get("requests", 0))

    def row(self) -> dict:
        if self.summary is not None:
            return {"batch_size": self.batch_size, "concurrency": self.concurrency, "tool": self.tool,
                    **self.summary, "errors": self.errors}
        lat = np.array(self.latencies_s) * 1e3
        seconds = max(self.seconds, 1e-9)
        row = {"batch_size": self.batch_size, "concurrency": self.concurrency, "tool": self.tool,
               "requests": len(lat), "errors": self.errors, "seconds": round(self.seconds, 4),
               "inferences_per_second": len(lat) * self.batch_size / seconds,
               "latency_avg_ms": float(lat.mean()) if len(lat) else float("nan")}
        for p in PERCENTILES:
            row[f"latency_p{p}_ms"] = float(np.percentile(lat, p)) if len(lat) else float("nan")
        return row


def require_loopback(url: str) -> None:
    """Refuse any address that is not this machine (every address the name resolves to must be loopback)."""
    host = url.rpartition(":")[0] or url
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise UserError(f"cannot resolve {host!r}: {exc.strerror}") from None
    addresses = {info[4][0] for info in infos}
    remote = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if remote:
        raise UserError(f"the built-in load generator only measures a server on this machine (127.0.0.1/localhost), "
                        f"and {host} is {', '.join(remote)}: install perf_analyzer for remote servers")


def check_bounds(requests: int, seconds: float, concurrency: int = 1, warmup: int = 0) -> None:
    if not 1 <= requests <= MAX_REQUESTS:
        raise UserError(f"--requests must be in 1..{MAX_REQUESTS}, got {requests}")
    if not 0 < seconds <= MAX_SECONDS:
        raise UserError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {seconds}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UserError(f"concurrency must be in 1..{MAX_CONCURRENCY}, got {concurrency}")
    if not 0 <= warmup <= requests:
        raise UserError(f"--warmup must be in 0..{requests} (--requests), got {warmup}")


def _aio_module(protocol: str):
    try:
        if protocol == "http":
            import tritonclient.http.aio as module
        else:
            import tritonclient.grpc.aio as module
    except ImportError as exc:
        raise UserError(f"tritonclient's asyncio client is missing ({exc}): pip install 'tritonclient[all]'") from None
    return module


async def _measure(url: str, protocol: str, spec: ModelInterface, batch_size: int, concurrency: int,
                   requests: int, seconds: float, warmup: int, timeout: float) -> Measurement:
    module = _aio_module(protocol)
    client = module.InferenceServerClient(url, conn_limit=max(100, concurrency)) if protocol == "http" \
        else module.InferenceServerClient(url)
    dtype = NUMPY_TYPES[spec.datatype]
    data = np.random.default_rng(0).standard_normal((batch_size, *spec.dims)).astype(dtype)
    out = Measurement(batch_size=batch_size, concurrency=concurrency)
    sent = 0

    async def one() -> None:
        request = module.InferInput(spec.input_name, list(data.shape), spec.datatype)
        request.set_data_from_numpy(data)
        outputs = [module.InferRequestedOutput(spec.output_name)]
        if protocol == "http":
            await asyncio.wait_for(client.infer(spec.name, [request], outputs=outputs), timeout)
        else:
            await client.infer(spec.name, [request], outputs=outputs, client_timeout=timeout)

    async def worker(deadline: float) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            start = time.perf_counter()
            try:
                await one()
            except Exception as exc:  # a failed or timed-out request is counted, not fatal
                out.errors += 1
                out.first_error = out.first_error or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                continue
            out.latencies_s.append(time.perf_counter() - start)

    try:
        deadline = time.perf_counter() + seconds
        for _ in range(warmup):
            if time.perf_counter() >= deadline:
                break
            try:
                await one()
            except Exception:  # failures show up in the measured requests
                break
        begin = time.perf_counter()
        deadline = begin + seconds
        await asyncio.gather(*(worker(deadline) for _ in range(concurrency)))
        out.seconds = time.perf_counter() - begin
    finally:
        await client.close()
    return out


def measure(url: str, protocol: str, spec: ModelInterface, *, batch_size: int, concurrency: int, requests: int,
            seconds: float, warmup: int = 0, timeout: float = 30.0) -> Measurement:
    """One measurement point; UserError when not a single request succeeded."""
    url = normalise_url(url, protocol)
    require_loopback(url)
    check_bounds(requests, seconds, concurrency, warmup)
    if not 1 <= batch_size <= spec.max_batch_size:
        raise UserError(f"batch size {batch_size} is outside 1..{spec.max_batch_size} ({spec.name}'s max batch size)")
    result = asyncio.run(_measure(url, protocol, spec, batch_size, concurrency, requests, seconds, warmup, timeout))
    if not result.latencies_s:
        raise UserError(f"no request to {spec.name} at {url} succeeded (batch {batch_size}, concurrency "
                        f"{concurrency}): {result.first_error or 'no request was sent within the time cap'}")
    return result
