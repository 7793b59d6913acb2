"""Run Triton's perf_analyzer for one measurement point, where it is installed (NGC's tritonserver SDK image, or
`pip install tritonclient[all]` builds that ship the binary), and read its CSV report back.

Upstream called it `perf_client` (its old name) from /workspace/bin; here it is looked up on PATH. The CSV's
latencies are in microseconds; they come back in milliseconds, in the columns of our own load generator.
"""
from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

from common.cli_errors import UserError

from .loadgen import PERCENTILES, Measurement

BINARY = "perf_analyzer"


def find_perf_analyzer() -> str | None:
    """The perf_analyzer executable on PATH, or None (PyPI's `perf-analyzer` 0.1.0 is a placeholder without one)."""
    return shutil.which(BINARY)


def _float(row: dict, column: str) -> float:
    try:
        return float(row[column])
    except (KeyError, TypeError, ValueError):
        return float("nan")


def parse_csv(path: Path, batch_size: int, concurrency: int) -> Measurement:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise UserError(f"perf_analyzer wrote no result to {path}")
    row = rows[-1]
    summary = {"inferences_per_second": _float(row, "Inferences/Second"),
               "latency_avg_ms": _float(row, "Avg latency") / 1e3}
    for p in PERCENTILES:
        summary[f"latency_p{p}_ms"] = _float(row, f"p{p} latency") / 1e3
    summary["requests"] = ""  # perf_analyzer reports rates, not the count of its stable window
    summary["seconds"] = ""
    return Measurement(batch_size=batch_size, concurrency=concurrency, tool=BINARY, summary=summary)


def measure(binary: str, url: str, protocol: str, model: str, *, batch_size: int, concurrency: int, requests: int,
            seconds: float) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        report = Path(tmp) / "report.csv"
        command = [binary, "-m", model, "-u", url, "-i", protocol, "-b", str(batch_size),
                   "--concurrency-range", f"{concurrency}:{concurrency}", "--measurement-mode", "count_windows",
                   "--measurement-request-count", str(requests), "--max-trials", "10", "-f", str(report)]
        try:
            # Its own stability loop decides how long a point takes; the wall-clock cap stops a runaway one.
            done = subprocess.run(command, capture_output=True, text=True, timeout=max(60.0, 10 * seconds))
        except subprocess.TimeoutExpired:
            raise UserError(f"perf_analyzer did not finish batch {batch_size}, concurrency {concurrency} within "
                            f"{max(60.0, 10 * seconds):g} s") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise UserError(f"perf_analyzer failed (exit {done.returncode}): {' | '.join(tail) or 'no output'}")
        return parse_csv(report, batch_size, concurrency)
