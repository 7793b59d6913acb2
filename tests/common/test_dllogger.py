import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from common import dllogger
from common.cli_errors import UserError
from common.dllogger import JSONStreamBackend, Logger, StdOutBackend, Verbosity, read_report

REPO = Path(__file__).resolve().parents[2]


class Recorder(dllogger.Backend):
    def __init__(self, verbosity):
        super().__init__(verbosity)
        self.logs, self.metas = [], []

    def log(self, timestamp, elapsedtime, step, data):
        self.logs.append((step, data))

    def metadata(self, timestamp, elapsedtime, metric, metadata):
        self.metas.append((metric, metadata))


def lines(path):
    return Path(path).read_text().splitlines()


def test_json_line_is_byte_identical_to_dllogger_v1(tmp_path):
    backend = JSONStreamBackend(Verbosity.VERBOSE, tmp_path / "r.json")
    ts = datetime(2024, 5, 6, 7, 8, 9, 123456)
    backend.log(ts, 1.5, (3, 10), {"train.loss": 0.25})
    backend.metadata(ts, 2.0, "train.loss", {"unit": None, "format": ":.5f"})
    backend.close()
    expected_log = json.dumps(dict(timestamp=str(ts.timestamp()), datetime=str(ts), elapsedtime="1.5",
                                   type="LOG", step=[3, 10], data={"train.loss": 0.25}))
    expected_meta = json.dumps(dict(timestamp=str(ts.timestamp()), datetime=str(ts), elapsedtime="2.0",
                                    type="METADATA", metric="train.loss", metadata={"unit": None, "format": ":.5f"}))
    assert lines(tmp_path / "r.json") == ["DLLL " + expected_log, "DLLL " + expected_meta]


def test_logger_writes_parsable_records_with_string_times(tmp_path):
    path = tmp_path / "r.json"
    logger = Logger([JSONStreamBackend(Verbosity.VERBOSE, path)])
    logger.log("PARAMETER", {"lr": 0.1, "arch": "efficientnet-b0"}, verbosity=Verbosity.DEFAULT)
    logger.metadata("val.top1", {"unit": "%", "format": ":.2f"})
    logger.log((0,), {"val.top1": 12.5})
    logger.log((), {"val.top1": 12.5})
    # Readable before flush/close: a crash must not lose logged records.
    raw = lines(path)
    assert len(raw) == 4 and all(line.startswith("DLLL ") for line in raw)
    records = [json.loads(line[5:]) for line in raw]
    for record in records:
        for key in ("timestamp", "datetime", "elapsedtime"):
            assert isinstance(record[key], str)
        float(record["timestamp"]), float(record["elapsedtime"])
    assert set(records[0]) == {"timestamp", "datetime", "elapsedtime", "type", "step", "data"}
    assert records[0]["step"] == "PARAMETER" and records[0]["type"] == "LOG"
    assert records[1] == {**records[1], "type": "METADATA", "metric": "val.top1",
                          "metadata": {"unit": "%", "format": ":.2f"}}
    assert "step" not in records[1]
    assert records[2]["step"] == [0] and records[3]["step"] == []
    logger.close()


def test_non_json_values_are_converted(tmp_path):
    path = tmp_path / "r.json"
    logger = Logger([JSONStreamBackend(Verbosity.VERBOSE, path)])
    logger.log((np.int64(1), 2), {"a": np.float32(0.5), "b": np.int64(3), "c": Path("/x/y"), "d": np.bool_(True),
                                  "e": np.arange(3), "f": object(), np.int64(7): 1.0})
    logger.close()
    (record,) = read_report(path)
    assert record["step"] == [1, 2]
    data = record["data"]
    assert data["a"] == 0.5 and data["b"] == 3 and data["c"] == "/x/y" and data["d"] is True
    assert data["e"] == [0, 1, 2] and isinstance(data["f"], str) and data["7"] == 1.0


def test_verbosity_filtering():
    default, verbose, off = Recorder(Verbosity.DEFAULT), Recorder(Verbosity.VERBOSE), Recorder(Verbosity.OFF)
    logger = Logger([default, verbose, off])
    logger.log((0, 1), {"x": 1}, verbosity=Verbosity.DEFAULT)
    logger.log((0, 1), {"y": 2}, verbosity=Verbosity.VERBOSE)
    logger.log((0,), {"z": 3})  # dllogger's default verbosity is VERBOSE
    logger.metadata("x", {"unit": "s"})
    assert default.logs == [((0, 1), {"x": 1})]
    assert verbose.logs == [((0, 1), {"x": 1}), ((0, 1), {"y": 2}), ((0,), {"z": 3})]
    assert off.logs == [] and off.metas == []
    assert default.metas == verbose.metas == [("x", {"unit": "s"})]


def test_append_vs_overwrite(tmp_path):
    path = tmp_path / "r.json"
    for append in (False, True):
        backend = JSONStreamBackend(Verbosity.VERBOSE, path, append=append)
        Logger([backend]).log((0,), {"append": append})
        backend.close()
    assert [r["data"] for r in read_report(path)] == [{"append": False}, {"append": True}]
    backend = JSONStreamBackend(Verbosity.VERBOSE, path)
    Logger([backend]).log((1,), {"fresh": 1})
    backend.close()
    assert [r["data"] for r in read_report(path)] == [{"fresh": 1}]


def test_stdout_backend_formats(capsys):
    backend = StdOutBackend(Verbosity.DEFAULT, step_format=lambda s: f"Epoch: {s[0]}", prefix_format=lambda ts: "P ")
    logger = Logger([backend])
    logger.metadata("train.loss", {"unit": None, "format": ":.3f"})
    logger.log((2,), {"train.loss": 0.123456, "val.top1": 50}, verbosity=Verbosity.DEFAULT)
    logger.log((2,), {"hidden": 1}, verbosity=Verbosity.VERBOSE)
    assert capsys.readouterr().out == "P Epoch: 2 train.loss : 0.123  val.top1 : 50 \n"

    custom = StdOutBackend(Verbosity.DEFAULT, metric_format=lambda m, md, v: f"{m}={v}")
    custom.log(datetime(2024, 1, 1), 0.0, "PARAMETER", {"lr": 0.1})
    assert capsys.readouterr().out == "DLL 2024-01-01 00:00:00 - PARAMETER lr=0.1\n"


def test_module_level_functions_use_the_global_logger(tmp_path):
    recorder = Recorder(Verbosity.VERBOSE)
    dllogger.init([recorder])
    dllogger.log(step=(1,), data={"a": 1})
    dllogger.metadata("a", {"unit": "s"})
    dllogger.flush()
    assert recorder.logs == [((1,), {"a": 1})] and recorder.metas == [("a", {"unit": "s"})]
    dllogger.init([])


def test_read_report_skips_foreign_and_truncated_lines(tmp_path):
    path = tmp_path / "mixed.log"
    path.write_text('some stdout line\nDLLL {"type": "LOG", "step": [0], "data": {"a": 1}}\nDLLL {"type": "LO')
    assert read_report(path) == [{"type": "LOG", "step": [0], "data": {"a": 1}}]
    with pytest.raises(UserError, match="does not exist"):
        read_report(tmp_path / "missing.json")


def test_tensorboard_backend_writes_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("torch.utils.tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    backend = dllogger.TensorBoardBackend(Verbosity.VERBOSE, tmp_path / "tb")
    logger = Logger([backend])
    logger.log("PARAMETER", {"lr": 0.1})
    for epoch in range(2):
        for it in (10, 20):
            # One step arrives as one record per verbosity level: it must not advance the counter twice.
            logger.log((epoch, it), {"train.loss": float(epoch * 100 + it)})
            logger.log((epoch, it), {"train.data_time": 0.01, "train.note": "text"})
            logger.log((epoch, it, 1), {"val.top1": 50.0})
        logger.log((epoch,), {"train.loss": float(epoch), "val.top1": 60.0 + epoch})
    logger.log((), {"val.top1": 61.0})
    logger.close()

    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    steps = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert steps["iteration/train.loss"] == [(1, 10.0), (2, 20.0), (3, 110.0), (4, 120.0)]
    assert [s for s, _ in steps["iteration/train.data_time"]] == [1, 2, 3, 4]
    assert [s for s, _ in steps["iteration/val.top1"]] == [1, 2, 3, 4]
    assert steps["epoch/train.loss"] == [(0, 0.0), (1, 1.0)]
    assert steps["epoch/val.top1"] == [(0, 60.0), (1, 61.0)]
    assert set(steps) == {"iteration/train.loss", "iteration/train.data_time", "iteration/val.top1",
                          "epoch/train.loss", "epoch/val.top1"}


def test_common_modules_do_not_import_torch():
    code = ("import sys, common.dllogger, common.training_log, common.plot_reports; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_json_backend_creates_missing_folders(tmp_path):
    path = tmp_path / "logs" / "deep" / "log.json"
    backend = JSONStreamBackend(Verbosity.VERBOSE, str(path))
    Logger([backend]).log(step=(0,), data={"x": 1.0})
    backend.close()
    assert read_report(path)[0]["data"] == {"x": 1.0}
