"""A diverged run stops with one line and status 3 and never writes NaN weights over its checkpoints; single
non-finite steps (fp16 AMP's overflow steps) do not stop it."""
from __future__ import annotations

import json
import math

import pytest
import torch

from image_classification.training.divergence import EXIT_DIVERGED, DivergenceWatch, TrainingDiverged
from tests.conftest import run_script
from tests.image_classification.training.helpers import run


def _argv(data, workspace, *extra) -> list:
    return [data, "--workspace", workspace, "--image-size", 32, "-b", 16, "--prof", 6, "-j", 0, "--seed", 1,
            "--bn_momentum", 0.1, "--cpu", "--no-progress", "--print-freq", 2, *extra]


def test_a_diverging_resume_stops_with_status_3_and_keeps_the_finite_checkpoints(small_digits, tmp_path):
    workspace = tmp_path / "ws"
    run(small_digits, workspace, "--epochs", 3, "--run-epochs", 1, "-j", 0)
    saved = {name: (workspace / name).read_bytes() for name in ("checkpoint.pth.tar", "model_best.pth.tar")}
    proc = run_script("efficientnet/main.py", *_argv(small_digits, workspace, "--epochs", 3, "--lr", 1e10,
                                                     "--max-nonfinite-steps", 3, "--resume", "auto"))
    assert proc.returncode == EXIT_DIVERGED, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: training diverged"), proc.stderr
    assert "NaN or inf for 3 steps in a row, since step" in lines[0]
    for name, content in saved.items():
        assert (workspace / name).read_bytes() == content, f"{name} was written over"
    summary = json.loads((workspace / "summary.json").read_text())
    assert summary["error"].startswith("training diverged")


def test_nan_weights_are_never_saved_even_when_the_streak_is_not_reached(small_digits, tmp_path):
    with pytest.raises(TrainingDiverged, match="the weights hold NaN or inf after step 4;"):
        run(small_digits, tmp_path, "--epochs", 2, "-j", 0, "--lr", 1e10, "--max-nonfinite-steps", 1000)
    assert not list(tmp_path.glob("*.pth.tar"))


def test_the_watch_counts_only_streaks():
    watch = DivergenceWatch(torch.device("cpu"), limit=3)
    losses = [1.0, math.inf, 2.0, math.nan, math.nan, 0.5, math.inf, math.inf]  # the longest streak: 2
    for step, loss in enumerate(losses, start=1):
        watch.add(torch.tensor(loss))
        watch.check(step, epoch=0)
    watch.add(torch.tensor(math.nan))
    with pytest.raises(TrainingDiverged, match="for 3 steps in a row, since step 7 "):
        watch.check(len(losses) + 1, epoch=0)
