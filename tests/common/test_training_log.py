import json
from pathlib import Path

import numpy as np
import pytest

from common import dllogger
from common.dllogger import JSONStreamBackend, Verbosity, read_report
from common.training_log import (
    ACC_METER,
    LOSS_METER,
    LR_METER,
    PERF_METER,
    QuantileMeter,
    TrainingLogger,
)

REPO = Path(__file__).resolve().parents[2]


class Recorder(dllogger.Backend):
    def __init__(self, verbosity=Verbosity.VERBOSE):
        super().__init__(verbosity)
        self.logs, self.metas = [], []

    def log(self, timestamp, elapsedtime, step, data):
        self.logs.append((step, data))

    def metadata(self, timestamp, elapsedtime, metric, metadata):
        self.metas.append((metric, metadata))

    def at(self, step):
        merged = {}
        for s, data in self.logs:
            if s == step:
                merged.update(data)
        return merged


def make(print_interval=2, **metrics):
    rec = Recorder()
    logger = TrainingLogger(print_interval, [rec])
    for name, (meter, verbosity) in metrics.items():
        logger.register_metric(name.replace("__", "."), meter, verbosity)
    return logger, rec


def test_window_average_is_weighted_and_logged_every_print_interval():
    logger, rec = make(2, train__loss=(LOSS_METER(), 0), train__total_ips=(PERF_METER, 0))
    logger.start_epoch()
    for value, n in [(1.0, 1), (4.0, 3), (10.0, 1), (20.0, 1)]:
        logger.start_iteration()
        logger.log_metric("train.loss", value, n)
        logger.end_iteration()
    assert [s for s, _ in rec.logs] == [(0, 2), (0, 4)]
    assert rec.at((0, 2)) == {"train.loss": pytest.approx(13 / 4)}  # (1*1 + 4*3) / 4
    assert rec.at((0, 4)) == {"train.loss": 15.0}  # total_ips got no values: omitted, not NaN


def test_no_record_when_a_window_is_empty():
    logger, rec = make(1, train__loss=(LOSS_METER(), 0))
    logger.start_epoch()
    logger.end_iteration()
    assert rec.logs == []


def test_epoch_accuracy_mean_and_run_max():
    logger, rec = make(2, val__top1=(ACC_METER(), 0))
    for batches in ([(50.0, 10), (70.0, 30)], [(90.0, 1)], [(80.0, 2), (60.0, 2), (70.0, 2)]):
        logger.start_epoch()
        for value, n in batches:  # the last window of an epoch may be partial
            logger.log_metric("val.top1", value, n)
            logger.end_iteration("val")
        logger.end_epoch()
        values, weights = zip(*batches)
        assert logger.epoch_summary() == {"val.top1": pytest.approx(np.average(values, weights=weights))}
    assert rec.at((0,)) == {"val.top1": pytest.approx(65.0)}
    assert rec.at((2,)) == {"val.top1": pytest.approx(70.0)}
    logger.end()
    assert rec.at(()) == {"val.top1": 90.0}
    assert logger.summary() == {"val.top1": 90.0}


def test_run_loss_is_the_minimum_over_epochs():
    # Upstream's MinMeter kept the maximum (2.0 here).
    logger, rec = make(10, train__loss=(LOSS_METER(), 0))
    for epoch_losses in ([2.0, 2.0], [0.5, 1.5], [1.5, 1.5]):
        logger.start_epoch()
        for loss in epoch_losses:
            logger.log_metric("train.loss", loss)
            logger.end_iteration()
        logger.end_epoch()
    logger.end()
    assert [rec.at((e,))["train.loss"] for e in range(3)] == [2.0, 1.0, 1.5]
    assert logger.summary() == {"train.loss": 1.0}
    assert rec.at(()) == {"train.loss": 1.0}


def test_lr_is_the_last_value_and_perf_averages_at_every_level():
    logger, rec = make(2, train__lr=(LR_METER(), 0), train__compute_ips=(PERF_METER(), 0))
    samples = [[(100.0, 1), (200.0, 1), (300.0, 2)], [(1000.0, 4)]]
    for epoch, batches in enumerate(samples):
        logger.start_epoch()
        for i, (ips, n) in enumerate(batches):
            logger.log_metric("train.lr", 0.1 / (epoch * 10 + i + 1))
            logger.log_metric("train.compute_ips", ips, n)
            logger.end_iteration()
        logger.end_epoch()
    logger.end()
    assert rec.at((0, 2)) == {"train.lr": 0.05, "train.compute_ips": 150.0}
    assert rec.at((0,)) == {"train.lr": pytest.approx(0.1 / 3), "train.compute_ips": 225.0}
    assert logger.summary() == {"train.lr": pytest.approx(0.1 / 11), "train.compute_ips": pytest.approx(4900 / 8)}
    assert all(type(v) is float for v in logger.summary().values())


def test_quantiles_are_exact_nearest_values():
    logger, rec = make(1000)
    logger.register_latency_metrics("val", Verbosity.VERBOSE)
    assert [m for m, _ in rec.metas] == ["val.compute_latency", "val.compute_latency_at100",
                                        "val.compute_latency_at99", "val.compute_latency_at95",
                                        "val.compute_latency_at90", "val.compute_latency_at50"]
    rng = np.random.default_rng(0)
    values = rng.permutation(np.arange(1, 101)) / 1000  # 1 ms .. 100 ms, shuffled
    logger.start_epoch()
    for v in values:
        logger.log_latency("val", v)
        logger.end_iteration("val")
    logger.end_epoch()
    epoch = rec.at((0,))
    assert epoch["val.compute_latency_at100"] == 0.100
    assert epoch["val.compute_latency_at99"] == 0.099
    assert epoch["val.compute_latency_at95"] == 0.095
    assert epoch["val.compute_latency_at90"] == 0.090
    assert epoch["val.compute_latency_at50"] in (0.050, 0.051)  # nearest rank of an even count
    assert epoch["val.compute_latency"] == pytest.approx(0.0505)
    meter = QuantileMeter(0.5)
    for v in [4.0, 1.0, 3.0, 2.0, 5.0]:
        meter.record(v)
    assert meter.window.value() == 3.0


def test_one_record_per_step_filtered_per_backend(tmp_path):
    default, verbose = Recorder(Verbosity.DEFAULT), Recorder(Verbosity.VERBOSE)
    logger = TrainingLogger(1, [default, verbose])
    logger.register_metric("train.loss", LOSS_METER(), Verbosity.DEFAULT)
    logger.register_metric("train.data_time", PERF_METER(), Verbosity.VERBOSE)
    logger.start_epoch()
    logger.log_metric("train.loss", 1.0)
    logger.log_metric("train.data_time", 0.5)
    logger.end_iteration()
    assert default.logs == [((0, 1), {"train.loss": 1.0})]
    assert verbose.logs == [((0, 1), {"train.loss": 1.0, "train.data_time": 0.5})]


def test_val_steps_and_val_mode_covers_val_ema():
    logger, rec = make(2, train__loss=(LOSS_METER(), 0), val__top1=(ACC_METER(), 0), val_ema__top1=(ACC_METER(), 0))
    logger.start_epoch()
    for _ in range(4):
        logger.log_metric("train.loss", 1.0)
        logger.end_iteration("train")
    for _ in range(2):
        logger.log_metric("val.top1", 50.0)
        logger.log_metric("val_ema.top1", 60.0)
        logger.end_iteration("val")
    logger.log_metric("train.loss", 3.0)  # a val window must not flush train metrics
    assert rec.logs[-1] == ((0, 4, 2), {"val.top1": 50.0, "val_ema.top1": 60.0})
    logger.end_epoch()
    assert rec.at((0,)) == {"train.loss": 1.4, "val.top1": 50.0, "val_ema.top1": 60.0}
    logger.start_epoch()
    logger.log_metric("train.loss", 1.0)
    logger.end_iteration()
    logger.log_metric("train.loss", 1.0)
    logger.end_iteration()
    assert rec.logs[-1][0] == (1, 2)  # counters restart every epoch


def test_parameters_metadata_and_json_report_without_nan(tmp_path):
    path = tmp_path / "raport.json"
    logger = TrainingLogger(1, [JSONStreamBackend(Verbosity.VERBOSE, path)], start_epoch=4)
    logger.log_parameter({"lr": 0.1, "data": Path("/data")})
    logger.register_metric("train.loss", LOSS_METER, metadata={"unit": None, "format": ":.5f"})
    logger.register_metric("val.top1", ACC_METER, metadata={"unit": "%", "format": ":.2f"})
    logger.start_epoch()
    logger.log_metric("train.loss", 2.0)
    logger.end_iteration()
    logger.end_epoch()
    logger.end()
    text = path.read_text()
    assert "NaN" not in text and "null" not in text.replace('"unit": null', "")
    records = read_report(path)
    assert records[0]["step"] == "PARAMETER" and records[0]["data"] == {"lr": 0.1, "data": "/data"}
    assert [(r["metric"], r["metadata"]) for r in records if r["type"] == "METADATA"] == [
        ("train.loss", {"unit": None, "format": ":.5f"}), ("val.top1", {"unit": "%", "format": ":.2f"})]
    logs = [(r["step"], r["data"]) for r in records[1:] if r["type"] == "LOG"]
    assert logs == [([5, 1], {"train.loss": 2.0}), ([5], {"train.loss": 2.0}), ([], {"train.loss": 2.0})]
    json.dumps(logger.summary(), allow_nan=False)


def test_values_logged_after_the_last_epoch_still_reach_the_run_summary():
    logger, _ = make(5, val__top1=(ACC_METER(), 0))
    logger.start_epoch()
    logger.log_metric("val.top1", 40.0)
    logger.end_epoch()
    logger.log_metric("val.top1", 80.0)
    logger.end()
    assert logger.summary() == {"val.top1": 80.0}


def test_unregistered_metric_is_a_clear_error():
    logger, _ = make()
    with pytest.raises(KeyError, match="register_metric"):
        logger.log_metric("train.loss", 1.0)
