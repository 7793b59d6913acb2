"""Drop-in replacement for NVIDIA dllogger v1.0.0, which is not on PyPI.

The API and the `DLLL {json}` line format match dllogger v1.0.0, so parsers written for upstream reports keep
working. Differences: the JSON backend flushes every record (a crash loses nothing already logged), values that
JSON cannot encode (numpy scalars, paths, tensors) are converted instead of crashing the run, logging before
`init` is a no-op rather than an AttributeError, and a TensorBoard backend is added.
"""
from __future__ import annotations

import json
import numbers
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from common.cli_errors import UserError


class Verbosity:
    OFF = -1
    DEFAULT = 0
    VERBOSE = 1


def _jsonable(value: Any) -> Any:
    """Turn `value` into something json.dumps accepts: a log call must never take the training run down."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, (str, int, float, bool)) else str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    # numpy scalars and arrays, 0-d or small tensors: tolist() yields plain Python numbers.
    if hasattr(value, "tolist"):
        try:
            return _jsonable(value.tolist())
        except Exception:
            pass
    return str(value)


class Backend:
    def __init__(self, verbosity: int):
        self.verbosity = verbosity

    def log(self, timestamp: datetime, elapsedtime: float, step, data: dict) -> None:
        raise NotImplementedError

    def metadata(self, timestamp: datetime, elapsedtime: float, metric: str, metadata: dict) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.flush()


def default_step_format(step) -> str:
    return str(step)


def default_metric_format(metric: str, metadata: dict, value) -> str:
    unit = metadata.get("unit") or ""
    fmt = "{" + metadata["format"] + "}" if "format" in metadata else "{}"
    try:
        text = fmt.format(value) if value is not None else value
    except (ValueError, TypeError):  # e.g. a string value under a ":.5f" format
        text = value
    return f"{metric} : {text} {unit}"


def default_prefix_format(timestamp: datetime) -> str:
    return f"DLL {timestamp} - "


class StdOutBackend(Backend):
    def __init__(
        self,
        verbosity: int,
        step_format: Callable[[Any], str] = default_step_format,
        metric_format: Callable[[str, dict, Any], str] = default_metric_format,
        prefix_format: Callable[[datetime], str] = default_prefix_format,
    ):
        super().__init__(verbosity)
        self._metadata: dict[str, dict] = defaultdict(dict)
        self.step_format = step_format
        self.metric_format = metric_format
        self.prefix_format = prefix_format

    def metadata(self, timestamp, elapsedtime, metric, metadata):
        # Like dllogger, metadata only shapes how later values are printed.
        self._metadata[metric].update(metadata or {})

    def log(self, timestamp, elapsedtime, step, data):
        metrics = " ".join(self.metric_format(m, self._metadata[m], v) for m, v in data.items())
        print(f"{self.prefix_format(timestamp)}{self.step_format(step)} {metrics}", flush=True)

    def flush(self):
        sys.stdout.flush()


def drop_torn_tail(path: str | Path) -> int:
    """Cuts an unfinished last line (a run killed in the middle of a write) off the report, so the records appended
    after it start on a line of their own and every line parses. Whole lines are never touched. Returns the number
    of bytes cut."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, 2)
        if size == 0:
            return 0
        # Look back block by block for the last newline; a torn record is at most one line long.
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            if end == size and block.endswith(b"\n"):
                return 0
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        f.truncate(keep)
        return size - keep


class JSONStreamBackend(Backend):
    """`append` (a resumed run) adds to the report of the run it continues, so its history is kept; a torn last
    line is cut first (drop_torn_tail)."""

    def __init__(self, verbosity: int, filename: str | Path, append: bool = False):
        super().__init__(verbosity)
        self._filename = filename
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        self.torn_bytes = drop_torn_tail(filename) if append else 0
        self.file = open(filename, "a" if append else "w", encoding="utf-8")

    def _write(self, record: dict) -> None:
        if self.file.closed:
            return
        self.file.write(f"DLLL {json.dumps(_jsonable(record))}\n")
        self.file.flush()

    @staticmethod
    def _header(timestamp: datetime, elapsedtime: float) -> dict:
        return dict(timestamp=str(timestamp.timestamp()), datetime=str(timestamp), elapsedtime=str(elapsedtime))

    def log(self, timestamp, elapsedtime, step, data):
        self._write(dict(self._header(timestamp, elapsedtime), type="LOG", step=step, data=data))

    def metadata(self, timestamp, elapsedtime, metric, metadata):
        self._write(dict(self._header(timestamp, elapsedtime), type="METADATA", metric=metric, metadata=metadata))

    def flush(self):
        if not self.file.closed:
            self.file.flush()

    def close(self):
        self.file.close()


class TensorBoardBackend(Backend):
    """Numeric values of LOG records as scalars.

    Steps `(epoch, iteration, ...)` restart their iteration at every epoch, so they are mapped onto a running
    counter per metric group (`train`, `val`, ...); it advances when the step changes, because one step arrives
    as several records (one per verbosity level). `(epoch,)` steps use the epoch. Steps without a position on a
    curve (`"PARAMETER"`, the run summary `()`) are skipped.
    """

    def __init__(self, verbosity: int, log_dir: str | Path):
        super().__init__(verbosity)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise UserError(
                f"TensorBoard logging needs torch and tensorboard ({exc}): pip install tensorboard "
                "(or the project's [tensorboard] extra)"
            ) from exc
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self._counter: dict[str, int] = defaultdict(int)
        self._last_step: dict[str, Any] = {}

    def _global_step(self, step, metric: str) -> tuple[str, int] | None:
        if isinstance(step, numbers.Integral):
            return "epoch", int(step)
        if not isinstance(step, (list, tuple)) or not step:
            return None
        if len(step) == 1:
            return ("epoch", int(step[0])) if isinstance(step[0], numbers.Integral) else None
        group = metric.partition(".")[0]
        if self._last_step.get(group) != tuple(step):
            self._last_step[group] = tuple(step)
            self._counter[group] += 1
        return "iteration", self._counter[group]

    def log(self, timestamp, elapsedtime, step, data):
        for metric, value in data.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            position = self._global_step(step, metric)
            if position is None:
                return
            level, global_step = position
            # Separate tags: an epoch curve and an iteration curve of one metric have different x axes.
            self.writer.add_scalar(f"{level}/{metric}", float(value), global_step)

    def metadata(self, timestamp, elapsedtime, metric, metadata):
        pass

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


class Logger:
    def __init__(self, backends: list[Backend]):
        self.backends = list(backends)
        self.starttime = datetime.now()

    def _now(self) -> tuple[datetime, float]:
        timestamp = datetime.now()
        return timestamp, (timestamp - self.starttime).total_seconds()

    def log(self, step, data: dict, verbosity: int = Verbosity.VERBOSE,
            metric_verbosity: dict[str, int] | None = None) -> None:
        """`metric_verbosity` (an extension) filters single metrics per backend, so one record carries everything
        to a verbose backend and only the default-level metrics to the screen, without duplicate records."""
        timestamp, elapsed = self._now()
        for backend in self.backends:
            if backend.verbosity < verbosity:
                continue
            shown = data
            if metric_verbosity:
                shown = {k: v for k, v in data.items() if metric_verbosity.get(k, verbosity) <= backend.verbosity}
                if not shown:
                    continue
            backend.log(timestamp, elapsed, step, shown)

    def metadata(self, metric: str, metadata: dict) -> None:
        timestamp, elapsed = self._now()
        for backend in self.backends:
            if backend.verbosity > Verbosity.OFF:
                backend.metadata(timestamp, elapsed, metric, metadata)

    def flush(self) -> None:
        for backend in self.backends:
            backend.flush()

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


GLOBAL_LOGGER = Logger([])


def init(backends: list[Backend]) -> Logger:
    global GLOBAL_LOGGER
    GLOBAL_LOGGER = Logger(backends)
    return GLOBAL_LOGGER


def log(step, data: dict, verbosity: int = Verbosity.VERBOSE) -> None:
    GLOBAL_LOGGER.log(step, data, verbosity)


def metadata(metric: str, metadata: dict) -> None:
    GLOBAL_LOGGER.metadata(metric, metadata)


def flush() -> None:
    GLOBAL_LOGGER.flush()


def read_report(path: str | Path) -> list[dict]:
    """The records of a DLLogger JSON report, in file order.

    Lines without the `DLLL ` prefix are ignored (reports are sometimes captured together with stdout), and so
    is a line that does not parse, which is what a run killed in the middle of a write leaves behind.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"report {path} does not exist: check the path")
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("DLLL "):
                continue
            try:
                record = json.loads(line[len("DLLL "):])
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records
