"""Metric aggregation for training and validation, written as DLLogger records.

Every metric is aggregated on three levels: the iteration window (the last `print_interval` iterations), the
epoch, and the run. Upstream's version of this module had two bugs fixed here: its run-level "min" loss kept
the maximum, and its latency quantiles used NumPy's removed `interpolation=` keyword.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from common import dllogger
from common.cli_errors import UserError
from common.dllogger import Verbosity


class Average:
    """Mean weighted by `n` (e.g. the batch size)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.total, self.n = 0.0, 0

    def record(self, value: float, n: int = 1):
        self.total += value * n
        self.n += n

    def value(self) -> float | None:
        return self.total / self.n if self.n else None

    def feed(self, upper):
        if self.n:
            upper.record(self.value(), self.n)


class _Extreme:
    pick = staticmethod(max)

    def __init__(self):
        self.reset()

    def reset(self):
        self.best = None

    def record(self, value: float, n: int = 1):
        self.best = value if self.best is None else self.pick(self.best, value)

    def value(self) -> float | None:
        return self.best

    def feed(self, upper):
        if self.best is not None:
            upper.record(self.best)


class Max(_Extreme):
    pick = staticmethod(max)


class Min(_Extreme):
    pick = staticmethod(min)


class Last(_Extreme):
    pick = staticmethod(lambda old, new: new)


class Quantile:
    """Keeps every value: a quantile cannot be built from the quantiles of parts."""

    def __init__(self, q: float):
        self.q = q
        self.reset()

    def reset(self):
        self.values: list[float] = []

    def record(self, value: float, n: int = 1):
        self.values.extend([value] * n)

    def value(self) -> float | None:
        if not self.values:
            return None
        return float(np.quantile(self.values, self.q, method="nearest"))

    def feed(self, upper):
        upper.values.extend(self.values)


class Meter:
    """One aggregator per level; a closed window feeds the epoch, a closed epoch feeds the run."""

    def __init__(self, window, epoch, run):
        self.window, self.epoch, self.run = window, epoch, run

    def record(self, value: float, n: int = 1):
        self.window.record(value, n)

    def close_window(self):
        self.window.feed(self.epoch)
        self.window.reset()

    def close_epoch(self):
        self.close_window()
        self.epoch.feed(self.run)
        self.epoch.reset()


class QuantileMeter(Meter):
    def __init__(self, q: float):
        super().__init__(Quantile(q), Quantile(q), Quantile(q))


def PERF_METER() -> Meter:
    return Meter(Average(), Average(), Average())


def ACC_METER() -> Meter:
    return Meter(Average(), Average(), Max())


def LOSS_METER() -> Meter:
    return Meter(Average(), Average(), Min())


def LR_METER() -> Meter:
    return Meter(Last(), Last(), Last())


# Upstream's at100/at99/at95, plus the median and p90 that latency reports usually quote.
LATENCY_QUANTILES = {"at100": 1.0, "at99": 0.99, "at95": 0.95, "at90": 0.90, "at50": 0.50}


def _in_mode(name: str, mode: str) -> bool:
    # Mode "val" also covers "val_ema.*", as upstream's prefix match did, so one validation loop can serve both.
    group = name.partition(".")[0]
    return group == mode or group.startswith(mode + "_")


class TrainingLogger:
    def __init__(self, print_interval: int, backends: list, start_epoch: int = -1, verbose: bool = False):
        if print_interval < 1:
            raise UserError(f"the print interval must be at least 1, got {print_interval}: pass a positive value")
        self.print_interval = print_interval
        self.verbose = verbose
        self.epoch = start_epoch
        self.iteration = 0
        self._mode_iterations: dict[str, int] = defaultdict(int)
        self.metrics: dict[str, tuple[Meter, int]] = {}
        self._epoch_summary: dict[str, float] = {}
        # Installed as dllogger's global logger too, so code that calls dllogger.log directly (as upstream's
        # does) reaches the same backends.
        self.logger = dllogger.init(backends)

    def log_parameter(self, data: dict, verbosity: int = Verbosity.DEFAULT):
        self.logger.log(step="PARAMETER", data=data, verbosity=verbosity)

    def register_metric(self, name: str, meter, verbosity: int = 0, metadata: dict | None = None):
        if not isinstance(meter, Meter):
            meter = meter()  # a factory such as ACC_METER
        if self.verbose:
            print(f"Registering metric: {name}")
        self.metrics[name] = (meter, verbosity)
        self.logger.metadata(name, metadata or {})

    def register_latency_metrics(self, prefix: str, verbosity: int = Verbosity.VERBOSE):
        metadata = {"unit": "s", "format": ":.5f"}
        self.register_metric(f"{prefix}.compute_latency", PERF_METER, verbosity, metadata)
        for suffix, q in LATENCY_QUANTILES.items():
            self.register_metric(f"{prefix}.compute_latency_{suffix}", QuantileMeter(q), verbosity, metadata)

    def log_metric(self, name: str, value: float, n: int = 1):
        if name not in self.metrics:
            raise KeyError(f"metric {name!r} was not registered: call register_metric first")
        self.metrics[name][0].record(float(value), n)

    def log_latency(self, prefix: str, seconds: float, n: int = 1):
        """Record one latency into whichever of the metrics of `register_latency_metrics` are registered."""
        for name in [f"{prefix}.compute_latency", *(f"{prefix}.compute_latency_{s}" for s in LATENCY_QUANTILES)]:
            if name in self.metrics:
                self.log_metric(name, seconds, n)

    def start_iteration(self):
        """Kept for upstream's call pattern; iterations are counted in end_iteration, which knows the mode."""

    def end_iteration(self, mode: str = "train"):
        if mode == "train":
            self.iteration += 1
            count, step = self.iteration, (self.epoch, self.iteration)
        else:
            self._mode_iterations[mode] += 1
            count = self._mode_iterations[mode]
            step = (self.epoch, self.iteration, count)
        if count % self.print_interval:
            return
        names = [n for n in self.metrics if _in_mode(n, mode)]
        self._log_level(step, {n: self.metrics[n][0].window for n in names})
        for name in names:
            self.metrics[name][0].close_window()
        self.logger.flush()

    def start_epoch(self):
        self.epoch += 1
        self.iteration = 0
        self._mode_iterations.clear()

    def end_epoch(self):
        for meter, _ in self.metrics.values():
            meter.close_window()
        self._epoch_summary = self._log_level((self.epoch,), {n: m.epoch for n, (m, _) in self.metrics.items()})
        for meter, _ in self.metrics.values():
            meter.close_epoch()
        self.logger.flush()

    def end(self):
        # Values logged after the last end_epoch still count towards the run.
        for meter, _ in self.metrics.values():
            meter.close_epoch()
        self._log_level((), {n: m.run for n, (m, _) in self.metrics.items()})
        # Close the report (and TensorBoard) files: a run inside a longer process must not leave them open.
        self.logger.close()

    def log_record(self, step, data: dict, verbosity: int = Verbosity.DEFAULT):
        """A one-off record outside the iteration/epoch bookkeeping (e.g. a teacher's accuracy before training)."""
        self.logger.log(step=step, data=data, verbosity=verbosity)
        self.logger.flush()

    def summary(self) -> dict:
        return _values({n: m.run for n, (m, _) in self.metrics.items()})

    def epoch_summary(self) -> dict:
        return dict(self._epoch_summary)

    def _log_level(self, step, aggregators: dict) -> dict[str, float]:
        """Log the non-empty aggregators as one record; each backend sees the metrics its verbosity admits."""
        values = _values(aggregators)
        if values:
            levels = {n: self.metrics[n][1] for n in values}
            self.logger.log(step=step, data=values, verbosity=min(levels.values()), metric_verbosity=levels)
        return values


def _values(aggregators: dict) -> dict[str, float]:
    values = {n: a.value() for n, a in aggregators.items()}
    return {n: float(v) for n, v in values.items() if v is not None}
