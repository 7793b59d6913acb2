import subprocess
import sys
from pathlib import Path

import pytest

from common.cli_errors import UserError
from common.dllogger import JSONStreamBackend, Verbosity
from common.plot_reports import epoch_metrics, plot_reports
from common.training_log import ACC_METER, LOSS_METER, TrainingLogger

REPO = Path(__file__).resolve().parents[2]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_report(path, epochs=3, ema=False, only_iterations=False):
    logger = TrainingLogger(1, [JSONStreamBackend(Verbosity.VERBOSE, path)])
    logger.log_parameter({"arch": "efficientnet-b0"})
    names = ["train.loss", "val.loss", "val.top1", "val.top5"] + (["val_ema.top1", "val_ema.top5"] if ema else [])
    for name in names:
        logger.register_metric(name, LOSS_METER if name.endswith("loss") else ACC_METER)
    for epoch in range(epochs):
        logger.start_epoch()
        for i, name in enumerate(names):
            logger.log_metric(name, 2.0 / (epoch + 1) if name.endswith("loss") else 10.0 * (epoch + 1) + i)
        logger.end_iteration("train")
        logger.end_iteration("val")
        if not only_iterations:
            logger.end_epoch()
    logger.logger.close()
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "common.plot_reports", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True)


def test_two_runs_make_one_png(tmp_path):
    a = write_report(tmp_path / "a.json")
    b = write_report(tmp_path / "b.json", epochs=2, ema=True)
    assert epoch_metrics(b)[1]["val_ema.top1"] == 24.0
    out = plot_reports([a, b], tmp_path / "plots" / "curves.png", labels=["base", "ema"])
    assert out == tmp_path / "plots" / "curves.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temp file left behind


def test_cli_prints_the_output_path(tmp_path):
    a = write_report(tmp_path / "a.json")
    result = cli(a, "-o", tmp_path / "c.png", "--metrics", "val.loss", "val.top1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("case", ["missing", "no_epochs", "no_records"])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, case):
    path = tmp_path / "r.json"
    if case == "no_epochs":
        write_report(path, only_iterations=True)
    elif case == "no_records":
        path.write_text("just some text\n")
    result = cli(path, "-o", tmp_path / "c.png")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert str(path) in result.stderr
    assert not (tmp_path / "c.png").exists()


def test_report_without_requested_metrics_and_label_mismatch(tmp_path):
    a = write_report(tmp_path / "a.json")
    with pytest.raises(UserError, match="none of the metrics val.top10"):
        plot_reports([a], tmp_path / "c.png", metrics=["val.top10"])
    with pytest.raises(UserError, match="2 labels for 1 reports"):
        plot_reports([a], tmp_path / "c.png", labels=["x", "y"])


def test_missing_matplotlib_is_a_user_error(tmp_path, monkeypatch):
    a = write_report(tmp_path / "a.json")
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UserError) as info:
        plot_reports([a], tmp_path / "c.png")
    assert str(info.value) == "matplotlib is not installed: pip install matplotlib (or the project's [plot] extra)"
