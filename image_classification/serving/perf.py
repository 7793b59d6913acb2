"""Offline and online performance sweeps against a running Triton server, as upstream's Triton kits ran them.

- offline: one client (concurrency 1), one point per batch size (upstream: batch 1..64 in powers of two);
- online: batch 1, one point per concurrency (upstream: 8..256 in steps of 8).

Each point goes through perf_analyzer when it is on PATH, else through the bounded load generator (`loadgen`):
at most `requests` requests and `seconds` seconds per point, loopback only. Results: perf.csv (one row per point,
p50/p90/p95/p99 and average latency in ms, inferences/s), perf.json, and the PNG plots of `perf_plots`.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from common.atomic_files import atomic_write
from common.cli_errors import UserError

from . import loadgen, perf_analyzer, perf_plots
from .client import TritonClient, normalise_url

MODES = ("offline", "online", "both")
TOOLS = ("auto", "perf_analyzer", "loadgen")
COLUMNS = ("mode", "tool", "batch_size", "concurrency", "requests", "errors", "seconds", "inferences_per_second",
           "latency_avg_ms", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms")


@dataclass
class PerfOptions:
    model: str
    output: str
    url: str | None = None
    protocol: str = "http"
    mode: str = "both"
    batch_sizes: tuple[int, ...] = ()  # default: powers of two up to the model's max batch size
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16)
    requests: int = 200
    seconds: float = 10.0
    warmup: int = 10
    tool: str = "auto"
    log: object = field(default=print, repr=False)


def default_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    return tuple(2 ** i for i in range(int(math.log2(max_batch_size)) + 1))


def _choose_tool(tool: str) -> str | None:
    """The perf_analyzer binary to use, or None for the built-in load generator."""
    if tool not in TOOLS:
        raise UserError(f"--tool must be one of {', '.join(TOOLS)}, got {tool!r}")
    binary = perf_analyzer.find_perf_analyzer() if tool != "loadgen" else None
    if tool == "perf_analyzer" and binary is None:
        raise UserError("perf_analyzer is not on PATH (the PyPI package perf-analyzer is a placeholder): use the "
                        "tritonserver SDK image, or --tool loadgen")
    return binary


def _format(row: dict) -> str:
    return (f"batch {row['batch_size']:>3}, concurrency {row['concurrency']:>3}: "
            f"{row['inferences_per_second']:9.1f} inferences/s, latency p50 {row['latency_p50_ms']:.2f} / p90 "
            f"{row['latency_p90_ms']:.2f} / p95 {row['latency_p95_ms']:.2f} / p99 {row['latency_p99_ms']:.2f} ms"
            + (f", {row['errors']} errors" if row.get("errors") else ""))


def write_csv(rows: list[dict], path: Path) -> Path:
    with atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def run_perf(options: PerfOptions) -> dict:
    if options.mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    loadgen.check_bounds(options.requests, options.seconds, max(options.concurrency or (1,)), options.warmup)
    if any(c < 1 for c in options.concurrency) or any(b < 1 for b in options.batch_sizes):
        raise UserError("batch sizes and concurrencies must be at least 1")
    binary = _choose_tool(options.tool)
    url = normalise_url(options.url, options.protocol)
    if binary is None:
        loadgen.require_loopback(url)
    with TritonClient(url, options.protocol, options.model) as server:
        spec = server.interface
    batch_sizes = options.batch_sizes or default_batch_sizes(spec.max_batch_size)
    too_big = [b for b in batch_sizes if b > spec.max_batch_size]
    if too_big:
        raise UserError(f"batch sizes {', '.join(map(str, too_big))} exceed {spec.name}'s max batch size "
                        f"{spec.max_batch_size}")
    output = Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    tool = perf_analyzer.BINARY if binary else "loadgen (built in)"
    options.log(f"=> measuring {spec.name} at {url} ({options.protocol}) with {tool}: at most {options.requests} "
                f"requests and {options.seconds:g} s per point")

    def point(batch_size: int, concurrency: int) -> dict:
        if binary is not None:
            result = perf_analyzer.measure(binary, url, options.protocol, spec.name, batch_size=batch_size,
                                           concurrency=concurrency, requests=options.requests, seconds=options.seconds)
        else:
            result = loadgen.measure(url, options.protocol, spec, batch_size=batch_size, concurrency=concurrency,
                                     requests=options.requests, seconds=options.seconds, warmup=options.warmup)
        return result.row()

    rows: list[dict] = []
    plots: list[str] = []
    title = f"{spec.name} ({options.protocol})"
    if options.mode in ("offline", "both"):
        options.log("   offline (concurrency 1, batch sweep):")
        offline = []
        for b in batch_sizes:
            offline.append({"mode": "offline", **point(b, 1)})
            options.log("     " + _format(offline[-1]))
        rows += offline
    if options.mode in ("online", "both"):
        options.log("   online (batch 1, concurrency sweep):")
        online = []
        for c in options.concurrency:
            online.append({"mode": "online", **point(1, c)})
            options.log("     " + _format(online[-1]))
        rows += online
    csv_path = write_csv(rows, output / "perf.csv")
    try:
        if options.mode in ("offline", "both"):
            plots.append(str(perf_plots.plot_offline(offline, output / "latency_vs_batch.png", title)))
        if options.mode in ("online", "both"):
            plots.append(str(perf_plots.plot_throughput_vs_latency(online, output / "throughput_vs_latency.png",
                                                                   title)))
            plots.append(str(perf_plots.plot_latency_vs_concurrency(online, output / "latency_vs_concurrency.png",
                                                                    title)))
    except UserError as exc:  # no matplotlib: the numbers are still worth having
        options.log(f"note: {exc}")
    summary = {"model": spec.name, "url": url, "protocol": options.protocol, "tool": tool,
               "requests_cap": options.requests, "seconds_cap": options.seconds, "rows": rows,
               "csv": str(csv_path), "plots": plots}
    with atomic_write(output / "perf.json", "w") as f:
        json.dump(summary, f, indent=1)
    options.log(f"   results: {csv_path}, {output / 'perf.json'}" + (f", {', '.join(plots)}" if plots else ""))
    return summary
